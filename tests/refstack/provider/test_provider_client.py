"""The AI provider stand-in and the worker's client, against the runbook (A §3, §2.3).

Scenario rows: ai.provider_key_invalid, ai.model_not_found, ai.provider_rate_limit,
ai.provider_partition, queue.task_timeout. Each planted client bug is caught here.
"""

from __future__ import annotations

import pickle
import threading
import time

import httpx
import pytest

from refstack.provider.client import (
    ModelNotFound,
    ProviderClient,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnauthorized,
    ProviderUnavailable,
    RetryPolicy,
)

from provider_harness import KEYS, ProviderProcess, free_port

MODEL = "gpt-4o-mini"
#: How late past the deadline a call may return (process scheduling, HTTP teardown).
DEADLINE_SLACK_S = 0.5


def client_for(p: ProviderProcess, keys: list[str] = KEYS, timeout: float = 10.0) -> ProviderClient:
    return ProviderClient(p.url, keys, timeout=timeout)


def calls(p: ProviderProcess, path: str = "/v1/generate") -> list[dict]:
    return [c for c in p.stats()["calls"] if c["path"] == path]


# ---- server ---------------------------------------------------------------------------


def test_server_auth_models_and_control(provider: ProviderProcess) -> None:
    with httpx.Client(base_url=provider.url) as h:
        assert h.get("/v1/models").status_code == 401
        bad = h.post("/v1/generate", json={"model": MODEL}, headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401 and bad.json()["error"]["message"] == "Invalid API Key"
        ok = h.get("/v1/models", headers={"Authorization": f"Bearer {KEYS[0]}"})
        assert ok.status_code == 200 and {m["id"] for m in ok.json()["data"]} >= {MODEL}
        chat = h.post(
            "/v1/chat/completions",
            json={"model": MODEL, "messages": [{"role": "user", "content": "abc"}]},
            headers={"Authorization": f"Bearer {KEYS[0]}"},
        )
        assert chat.json()["choices"][0]["message"]["content"] == f"[{MODEL}] cba"
        assert h.post("/_control", json={"no_such_knob": 1}).status_code == 400
        assert h.post("/_control", json={"mode": "bogus"}).status_code == 400
    stats = provider.stats()
    assert stats["by_outcome"] == {"unauthorized": 2, "ok": 2}
    provider.control.post("/_control/reset")
    assert provider.stats()["calls_total"] == 0


def test_generate_happy_path(provider: ProviderProcess) -> None:
    with client_for(provider) as c:
        out = c.generate(MODEL, "hello", deadline=5)
    assert out["output"] == f"[{MODEL}] olleh"
    assert provider.stats()["by_key"] == {KEYS[0]: {"ok": 1}}


# ---- ai.provider_key_invalid ------------------------------------------------------------


def _invalid_key_scenario(provider: ProviderProcess) -> tuple[ProviderUnauthorized, list[dict]]:
    provider.set(mode="unauthorized")
    with client_for(provider) as c, pytest.raises(ProviderUnauthorized) as info:
        c.generate(MODEL, "x", deadline=2)
    return info.value, calls(provider)


def test_invalid_key_fails_once_with_clear_message(provider: ProviderProcess) -> None:
    err, seen = _invalid_key_scenario(provider)
    assert err.code == "provider_unauthorized" and err.status == 401
    assert "Invalid API Key" in str(err) and "A §3.1" in str(err)
    assert len(seen) == 1, f"401 must not be retried (no retry storm); provider saw {len(seen)} calls"


def test_broken_retry_storm_is_caught(provider: ProviderProcess, plant) -> None:
    plant("provider_retry_storm")
    _, seen = _invalid_key_scenario(provider)
    assert len(seen) > 1, "the planted retry storm was not observed"


def test_client_from_env(provider: ProviderProcess) -> None:
    env = {"AI_PROVIDER_URL": provider.url, "AIHUBMIX_API_KEYS": ",".join(KEYS), "AI_PROVIDER_TIMEOUT": "5"}
    with ProviderClient.from_env(env) as c:
        assert c.keys == KEYS and c.timeout == 5.0
        assert c.generate(MODEL, "ab", deadline=3)["output"] == f"[{MODEL}] ba"
    with pytest.raises(ValueError, match="AI_PROVIDER_URL"):
        ProviderClient.from_env({})


# ---- ai.model_not_found -----------------------------------------------------------------


def test_model_not_found_not_retried_and_listed(provider: ProviderProcess) -> None:
    provider.set(mode="model_unavailable", model=MODEL)
    with client_for(provider) as c:
        models = {m["id"]: m["available"] for m in c.list_models()}
        with pytest.raises(ModelNotFound) as info:
            c.generate(MODEL, "x", deadline=2)
        assert c.generate("claude-3-haiku", "x", deadline=2)["model"] == "claude-3-haiku"
        with pytest.raises(ModelNotFound):
            c.generate("no-such-model", "x", deadline=2)
    assert models[MODEL] is False and models["claude-3-haiku"] is True
    assert info.value.code == "model_not_found" and "Model not found or not available" in str(info.value)
    assert [c["outcome"] for c in calls(provider)] == ["model_not_found", "ok", "model_not_found"]


# ---- ai.provider_rate_limit -------------------------------------------------------------


def _rate_limit_scenario(provider: ProviderProcess, deadline: float) -> tuple[object, list[dict]]:
    provider.set(mode="rate_limit", keys=[KEYS[0]], retry_after_s=30)
    with client_for(provider) as c:
        try:
            result: object = [c.generate(MODEL, f"job {i}", deadline=deadline) for i in range(3)]
        except ProviderError as exc:
            result = exc
    return result, calls(provider)


def test_rate_limit_rotates_keys_and_honours_retry_after(provider: ProviderProcess) -> None:
    result, seen = _rate_limit_scenario(provider, deadline=3)
    assert isinstance(result, list) and len(result) == 3, f"jobs did not complete: {result!r}"
    keys = [(c["key"], c["outcome"]) for c in seen]
    # One 429 on the throttled key, then the next key; Retry-After keeps the client off key 0.
    assert keys == [(KEYS[0], "rate_limited")] + [(KEYS[1], "ok")] * 3, keys


def test_broken_no_key_rotation_is_caught(provider: ProviderProcess, plant) -> None:
    plant("provider_no_key_rotation")
    result, seen = _rate_limit_scenario(provider, deadline=1.5)
    assert isinstance(result, ProviderError), "the planted bug let the jobs complete"
    assert {c["key"] for c in seen} == {KEYS[0]}


def test_all_keys_throttled_gives_up_without_storm(provider: ProviderProcess) -> None:
    provider.set(mode="rate_limit", retry_after_s=30)  # every key, cooling past the deadline
    t0 = time.monotonic()
    with client_for(provider) as c, pytest.raises(ProviderRateLimited) as info:
        c.generate(MODEL, "x", deadline=3)
    assert time.monotonic() - t0 < 1.0, "waiting cannot help: give up at once"
    assert sorted(c["key"] for c in calls(provider)) == sorted(KEYS), "each key tried exactly once"
    assert info.value.code == "provider_rate_limited"


def test_short_retry_after_is_waited_for(provider: ProviderProcess) -> None:
    provider.set(mode="rate_limit", keys=KEYS, retry_after_s=0.5)
    # Scenario step: the quota comes back 0.3 s later.
    heal = threading.Timer(0.3, lambda: provider.control.post("/_control/reset"))
    heal.start()
    try:
        with client_for(provider) as c:
            assert c.generate(MODEL, "x", deadline=4)["output"]
    finally:
        heal.cancel()
        heal.join()


# ---- ai.provider_partition: transient errors --------------------------------------------


def test_backoff_is_exponential_and_bounded_by_deadline(provider: ProviderProcess) -> None:
    provider.set(mode="error")
    deadline = 2.0
    t0 = time.monotonic()
    with client_for(provider) as c, pytest.raises(ProviderUnavailable) as info:
        c.generate(MODEL, "x", deadline=deadline)
    elapsed = time.monotonic() - t0
    assert deadline - 0.1 <= elapsed <= deadline + DEADLINE_SLACK_S, elapsed
    starts = [c["t"] for c in calls(provider)]
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert 3 <= len(starts) <= 8, f"expected a handful of spaced retries, got {len(starts)}"
    assert all(b > a for a, b in zip(gaps, gaps[1:])), f"backoff must grow: {gaps}"
    assert info.value.attempts == len(starts) and "deadline" in str(info.value)


def test_unreachable_provider_is_retried_then_unavailable() -> None:
    port = free_port()  # nothing listens there
    t0 = time.monotonic()
    with ProviderClient(f"http://127.0.0.1:{port}", KEYS, timeout=5) as c, pytest.raises(ProviderUnavailable) as e:
        c.generate(MODEL, "x", deadline=1.0)
    assert time.monotonic() - t0 <= 1.0 + DEADLINE_SLACK_S
    assert e.value.attempts >= 3


def test_recovers_after_heal_within_deadline(provider: ProviderProcess) -> None:
    provider.set(mode="error")
    heal = threading.Timer(0.6, lambda: provider.control.post("/_control", json={"mode": "normal"}))
    heal.start()  # scenario step: the provider heals 0.6 s into the call
    try:
        with client_for(provider) as c:
            assert c.generate(MODEL, "x", deadline=5)["output"]
    finally:
        heal.cancel()
        heal.join()
    outcomes = [c["outcome"] for c in calls(provider)]
    assert outcomes[-1] == "ok" and outcomes.count("error") >= 2


# ---- queue.task_timeout: slow provider --------------------------------------------------


def _slow_scenario(provider: ProviderProcess) -> tuple[object, float]:
    provider.set(mode="slow", delay_s=3.0)
    t0 = time.monotonic()
    with client_for(provider, timeout=10) as c:
        try:
            result: object = c.generate(MODEL, "x", deadline=1.0)
        except ProviderError as exc:
            result = exc
    return result, time.monotonic() - t0


def test_slow_provider_times_out_at_the_deadline(provider: ProviderProcess) -> None:
    result, elapsed = _slow_scenario(provider)
    assert isinstance(result, ProviderTimeout) and result.code == "timeout", result
    assert 0.9 <= elapsed <= 1.0 + DEADLINE_SLACK_S, f"timeout at the limit, not earlier or later: {elapsed:.2f}s"


def test_broken_no_deadline_is_caught(provider: ProviderProcess, plant) -> None:
    plant("provider_no_deadline")
    result, elapsed = _slow_scenario(provider)
    assert elapsed > 1.0 + DEADLINE_SLACK_S, "the planted bug still honoured the deadline"


def test_max_attempts_bounds_retries_on_long_deadline(provider: ProviderProcess) -> None:
    provider.set(mode="error")
    policy = RetryPolicy(backoff_base_s=0.01, backoff_cap_s=0.02, max_attempts=4)
    with ProviderClient(provider.url, KEYS, policy=policy) as c, pytest.raises(ProviderUnavailable):
        c.generate(MODEL, "x", deadline=30)
    assert len(calls(provider)) == 4


# ---- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "err",
    [
        ProviderUnauthorized("bad key", status=401, attempts=1, key="...0001"),
        ModelNotFound("gone", model="m", status=404),
        ProviderRateLimited("slow down", status=429),
        ProviderUnavailable("down"),
        ProviderTimeout("late", elapsed=1.5),
        ProviderError("provider_bad_request", "nope", status=400),
    ],
)
def test_errors_survive_pickling(err: ProviderError) -> None:
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err) and back.__dict__ == err.__dict__ and str(back) == str(err)
    assert back.code == err.code
