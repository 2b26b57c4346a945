"""AI provider scenarios (A §3, A §2.2-2.3): 401, model unavailable, 429 rotation, partition."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Iterator

import httpx
import pytest

from renderchaos.errors import TargetError
from renderchaos.faults.network import RouteDown
from renderchaos.faults.provider import ProviderBehaviour, ProviderControl
from renderchaos.probes.ai import AiApi, accept_ai
from renderchaos.probes.ledger import TERMINAL
from renderchaos.scenario import ScenarioRun, runs
from renderchaos.wait import Poll
from scenarios import ai as A

#: polls inside a detect/recover check: HTTP hiccups mean "not yet"; ScenarioFailed goes through
POLL = Poll(0.2, tolerate=(httpx.HTTPError, TargetError))
MODEL = "refstack-echo"
#: a 401 is never retried (A §3.1): one call per job, one spare for a model listing racing in
MAX_CALLS_PER_JOB_401 = 2
#: a throttled key is tried once per job, then the client rotates (A §3.3)
MAX_429_PER_JOB = 2


@pytest.fixture
def ai(scenario_run: ScenarioRun) -> Iterator[AiApi]:
    run = scenario_run
    run.target.require("ai_api")
    client = AiApi.for_user(run.target.api_url, run.admin, run.user.user_id, timeout=run.timeouts.connect)
    yield client
    client.close()


@pytest.fixture
def control(scenario_run: ScenarioRun) -> Iterator[ProviderControl]:
    url = scenario_run.target.provider_control_url
    if not url:
        pytest.skip("target has no provider control URL")
    with ProviderControl(url) as c:
        yield c


def submit_ai(run: ScenarioRun, ai: AiApi, prompt: str, model: str = MODEL) -> str:
    resp = ai.submit(prompt, model=model)
    job_id = accept_ai(run.ledger, resp)
    run.expect(job_id is not None, "AI job accepted (202 with an id)", f"{resp.status_code} {resp.text[:300]}")
    assert job_id is not None
    return job_id


def terminal(run: ScenarioRun, job_id: str) -> dict[str, Any] | None:
    job = run.ledger.status(job_id)
    return job if job and job["status"] in TERMINAL else None


def describe(job: dict[str, Any]) -> str:
    return f"{job['status']} {job.get('error_code')}: {str(job.get('error_message'))[:300]}"


def run_seconds(job: dict[str, Any]) -> float:
    """From the job's first start to its end (the span AI_TASK_TIMEOUT bounds, A §2.3)."""
    return (datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["started_at"])).total_seconds()


def completes(run: ScenarioRun, ai: AiApi, prompt: str, what: str, model: str = MODEL) -> dict[str, Any]:
    job_id = submit_ai(run, ai, prompt, model)
    job = run.recovered(lambda: terminal(run, job_id), what, poll=POLL)
    run.expect(job["status"] == "completed", what, describe(job))
    return job


# ---------------------------------------------------------------------------------------
@runs(A.KEY_INVALID)
def test_provider_key_invalid_fails_clearly_without_storm(scenario_run: ScenarioRun, ai: AiApi,
                                                          control: ProviderControl) -> None:
    run = scenario_run
    run.steady_state_before()
    fault = run.inject(ProviderBehaviour(run.target.provider_control_url or "", {"unauthorized": True}))
    job_id = submit_ai(run, ai, "hello with a revoked key")

    def failed_without_storm() -> dict[str, Any] | None:
        calls = control.stats().outcome("unauthorized")
        if calls > MAX_CALLS_PER_JOB_401:
            run.fail(f"a 401 is not retried: at most {MAX_CALLS_PER_JOB_401} provider call(s) for one job",
                     f"{calls} 401 answers so far for one job (retry storm; job {job_id})")
        return terminal(run, job_id)

    job = run.detect(failed_without_storm, "the AI job to fail on the provider's 401", poll=POLL)
    run.expect(job["status"] == "failed" and job.get("error_code") == "provider_unauthorized",
               "job failed with error_code provider_unauthorized", describe(job))
    msg = str(job.get("error_message") or "")
    run.expect("key" in msg.lower() and "401" in msg,
               "a clear message naming the rejected API key and the 401", repr(msg[:300]))
    stats = control.stats()
    run.expect(stats.outcome("unauthorized") <= MAX_CALLS_PER_JOB_401,
               f"no retry storm: at most {MAX_CALLS_PER_JOB_401} provider call(s) for the job", stats.summary())
    run.heal(fault, "fix the provider key (provider accepts it again)")
    completes(run, ai, "hello after the key fix", "a new AI job to complete with the fixed key")
    run.steady_state_after()


@runs(A.MODEL_NOT_FOUND)
def test_model_not_found_fails_and_models_list_reflects_it(scenario_run: ScenarioRun, ai: AiApi,
                                                           control: ProviderControl) -> None:
    run = scenario_run
    run.steady_state_before()
    models = ai.model_list()
    gone = next((m["id"] for m in models if m["id"] != MODEL and m["available"]), None)
    run.expect(gone is not None, "the provider lists an available model besides the canary model",
               f"models: {models}")
    assert gone is not None
    fault = run.inject(ProviderBehaviour(run.target.provider_control_url or "",
                                         {"unavailable_models": [gone]}))

    def listed_unavailable() -> bool:
        return any(m["id"] == gone and m["available"] is False for m in ai.model_list())

    run.detect(listed_unavailable, f"GET /api/v1/ai/models to show {gone} unavailable", poll=POLL)
    job_id = submit_ai(run, ai, "hello, missing model", model=gone)
    job = run.detect(lambda: terminal(run, job_id), f"the AI job on {gone} to fail", poll=POLL)
    run.expect(job["status"] == "failed" and job.get("error_code") == "model_not_found",
               "job failed with error_code model_not_found", describe(job))
    calls = [c for c in control.stats().generate_calls() if c.get("model") == gone]
    run.expect(len(calls) == 1, "model_not_found is not retried: one provider call",
               f"{len(calls)} call(s) for model {gone}")
    others = completes(run, ai, "other models still work", "a job on another model to complete meanwhile")
    run.expect(others["status"] == "completed", "other models unaffected", describe(others))
    run.heal(fault, f"model {gone} available again at the provider")
    run.recovered(lambda: any(m["id"] == gone and m["available"] is True for m in ai.model_list()),
                  f"GET /api/v1/ai/models to show {gone} available again", poll=POLL)
    completes(run, ai, "hello, model is back", f"a job on {gone} to complete", model=gone)
    run.steady_state_after()


@runs(A.RATE_LIMIT)
def test_rate_limit_rotates_keys_and_completes(scenario_run: ScenarioRun, ai: AiApi,
                                               control: ProviderControl) -> None:
    run = scenario_run
    run.steady_state_before()
    # which key does the client use first? (the configured order is the SUT's business)
    control.reset()
    first = submit_ai(run, ai, "which key?")
    run.detect(lambda: (j := terminal(run, first)) and j["status"] == "completed",
               "a baseline AI job to complete", poll=POLL)
    used = [c["key"] for c in control.stats().generate_calls() if c["outcome"] == "ok"]
    run.expect(bool(used), "the provider saw the baseline call", control.stats().summary())
    throttled = used[0]
    run.inject(ProviderBehaviour(run.target.provider_control_url or "",
                                 {"rate_limited_keys": [throttled], "retry_after_s": 30.0}))
    ids = [submit_ai(run, ai, f"under quota pressure {i}") for i in range(3)]

    def all_done() -> list[dict[str, Any]] | None:
        hits = control.stats().key_outcome(throttled, "rate_limited")
        if hits > MAX_429_PER_JOB * len(ids):
            run.fail(f"the client rotates away from a throttled key (<= {MAX_429_PER_JOB} 429s per job)",
                     f"{hits} calls on the throttled key for {len(ids)} jobs: {control.stats().summary()}")
        jobs = [terminal(run, i) for i in ids]
        return jobs if all(jobs) else None

    jobs = run.detect(all_done, "the jobs to finish while one key is throttled", poll=POLL)
    bad = [describe(j) for j in jobs if j["status"] != "completed"]
    run.expect(not bad, "every job completes on another key (A §3.3 key rotation)", "; ".join(bad))
    stats = control.stats()
    others = {k for k, v in stats.by_key.items() if k != throttled and v.get("ok", 0) > 0}
    run.expect(bool(others), "the provider saw successful calls on another configured key", stats.summary())
    run.expect(stats.key_outcome(throttled, "ok") == 0, "no success on the throttled key", stats.summary())
    run.remedy(control.reset, "quota back: provider normal")
    completes(run, ai, "after the quota reset", "an AI job to complete after the quota is back")
    run.steady_state_after()


_ATTEMPTS = re.compile(r"after (\d+) attempt")


@runs(A.PARTITION)
@pytest.mark.stack(**A.DEADLINE_STACK)
def test_provider_partition_backs_off_within_deadline(scenario_run: ScenarioRun, ai: AiApi) -> None:
    run = scenario_run
    run.target.require("fault_proxy")
    route = run.target.routes.get("provider")
    if not route or not run.target.toxiproxy_url:
        pytest.skip("target has no fault-proxy route to the AI provider")
    limit = A.AI_DEADLINE_S
    run.steady_state_before()
    completes(run, ai, "before the partition", "a baseline AI job to complete")
    fault = run.inject(RouteDown(run.target.toxiproxy_url, route))
    job_id = submit_ai(run, ai, "hello across a partition")
    job = run.detect(lambda: terminal(run, job_id), "the AI job to give up on the unreachable provider",
                     poll=POLL)
    took = run_seconds(job)
    run.expect(job["status"] in ("failed", "timeout")
               and job.get("error_code") in ("provider_unavailable", "timeout"),
               "job failed provider_unavailable (or timeout)", describe(job))
    run.expect(limit - 1.0 <= took <= limit + 3.0,
               f"retried until the task deadline AI_TASK_TIMEOUT={limit:g}s (not earlier, not later)",
               f"ended {took:.1f}s after its start: {describe(job)}")
    m = _ATTEMPTS.search(str(job.get("error_message") or ""))
    attempts = int(m.group(1)) if m else None
    run.expect(attempts is not None and 2 <= attempts <= 20,
               "several attempts with backoff (2..20 within the deadline, not one, not a storm)",
               f"attempts={attempts}: {describe(job)}")
    run.heal(fault, "provider route back up")
    completes(run, ai, "after the partition", "a new AI job to complete after the heal")
    run.steady_state_after()
