"""The fuzz engine against real reference stacks: the honest schema passes, every planted 500 is found.

One stack per case, started for the test and stopped after it: the API, Postgres, Redis,
RabbitMQ and the AI provider, with no render worker (accepted jobs wait in the queue instead of
loading the machine) and no per-key rate limit (429s are documented and waited out by the
engine, but at 5 r/s a gate-sized run would take ten minutes). The run is gate-sized: seed
fixed, at most ``GATE["max_examples"]`` examples per operation, a time budget.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from typing import Iterator

import httpx
import pytest

from renderchaos.probes.fuzz import FuzzResult, fuzz

pytestmark = pytest.mark.integration

GATE = {"seed": 20261, "max_examples": 200, "time_budget": 900.0, "exclude_tags": ("admin-faults",)}

#: planted 500 -> (operation, explicit case) pairs of which the engine must find at least the first
PLANTED_500 = {
    "api_500_on_lone_surrogate": [("POST /api/v1/ai/jobs", "prompt: lone surrogate"),
                                  ("POST /admin/users", "name: lone surrogate"),
                                  ("POST /api/v1/auth/login", "password: lone surrogate")],
    "api_500_on_null_ttl": [("POST /admin/users/{user_id}/tokens", "ttl_seconds: null")],
    "api_500_on_huge_ttl": [("POST /admin/users/{user_id}/tokens", "ttl_seconds: 1000000000000")],
    "api_500_on_long_asset_name": [("POST /v1/videos", "input_asset: 256 characters")],
}


@contextmanager
def fuzz_stack(chaos_state, broken: tuple[str, ...] = ()) -> Iterator[object]:
    from renderchaos.plugin import start_stack

    t0 = time.monotonic()
    stack = start_stack(chaos_state, broken=broken, workers=0, with_live=False,
                        env={"RATE_LIMIT_KEY_RATE": "0"})
    print(f"\nstack {','.join(broken) or 'healthy'} ready in {time.monotonic() - t0:.1f}s")
    try:
        yield stack
    finally:
        stack.stop()
        chaos_state.stacks.remove(stack)


def run_gate_fuzz(stack) -> FuzzResult:
    admin = {"Authorization": f"Bearer {stack.admin_token}"}
    with httpx.Client(base_url=stack.api_url, timeout=15.0) as client:
        fuzzer = client.post("/admin/users", headers=admin, json={"credits": 10**9, "name": "fuzz"}).json()
        other = client.post("/admin/users", headers=admin, json={"credits": 100, "name": "fuzz path ids"}).json()
    result = fuzz(
        f"{stack.api_url}/openapi.json",
        credentials={"apiKey": fuzzer["api_key"], "adminToken": stack.admin_token},
        base_bodies={"login": {"phone": fuzzer["phone"], "password": fuzzer["password"]}},
        path_parameters={"user_id": other["user_id"]},
        **GATE)
    print(json.dumps({"requests": result.requests, "explicit": result.explicit_cases, "elapsed_s": result.elapsed_s,
                      "statuses": dict(sorted(result.statuses.items())), "findings": len(result.findings),
                      "rate_limited_waits": result.rate_limited_waits, "out_of_time": result.out_of_time,
                      "not_generated": result.not_generated}))
    return result


def test_reference_openapi_passes_conformance_with_no_5xx(chaos_state):
    with fuzz_stack(chaos_state) as stack:
        result = run_gate_fuzz(stack)
    assert not result.out_of_time, result.summary()
    assert result.requests > 1000, result.summary()
    assert not result.findings, result.summary(limit=30)


@pytest.mark.parametrize("variant", sorted(PLANTED_500))
def test_each_planted_500_is_found(chaos_state, variant):
    with fuzz_stack(chaos_state, (variant,)) as stack:
        result = run_gate_fuzz(stack)
    found = {(f.operation, f.source.removeprefix("explicit:")) for f in result.server_errors}
    expected = PLANTED_500[variant]
    assert result.server_errors, f"{variant} not found:\n{result.summary()}"
    missing = [pair for pair in expected if pair not in found]
    assert not missing, f"{variant}: the engine missed {missing}\n{result.summary(limit=30)}"
