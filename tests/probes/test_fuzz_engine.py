"""The fuzz engine against a small real HTTP API (uvicorn on loopback) with switchable bugs.

No container: the target is tests/probes/fuzz_app.py served in a thread. The healthy app must
give no finding at all (no false alarm); each bug must be found, by the check that names it,
whatever the seed (the explicit cases are deterministic).
"""

from __future__ import annotations

import pytest

from renderchaos.errors import ConfigError, TargetError
from renderchaos.probes.fuzz import FuzzEngine, fuzz
from tests.probes.fuzz_app import Served, make_app

SMALL = {"max_examples": 10, "time_budget": 120.0, "credentials": {"key": "secret"}}


def run(bugs: tuple[str, ...] = (), **options):
    with Served(make_app(frozenset(bugs))) as url:
        return fuzz(f"{url}/openapi.json", **{**SMALL, **options})


def test_healthy_api_has_no_finding():
    result = run(seed=3)
    assert not result.findings, result.summary()
    assert result.explicit_cases >= 21 and result.requests > result.explicit_cases
    assert set(result.operations) == {"POST /items", "GET /items/{item_id}"}
    assert 401 not in result.statuses or result.statuses[401] < result.requests / 2  # credentials were used


@pytest.mark.parametrize("bug,operation,case,check", [
    ("malformed_json_500", "POST /items", "explicit:malformed JSON: truncated object", "not_a_server_error"),
    ("missing_field_500", "POST /items", "explicit:without name", "not_a_server_error"),
    ("surrogate_500", "POST /items", "explicit:name: lone surrogate", "not_a_server_error"),
    ("long_name_500", "POST /items", "explicit:name: 256 characters", "not_a_server_error"),
    ("null_count_500", "POST /items", "explicit:count: null", "not_a_server_error"),
    ("huge_count_500", "POST /items", "explicit:count: 9007199254740993", "not_a_server_error"),
    ("trace_in_400", "POST /items", "explicit:malformed JSON: truncated object", "stack_trace_in_body"),
])
@pytest.mark.parametrize("seed", [1, 2])
def test_each_bug_is_found_by_its_explicit_case_whatever_the_seed(bug, operation, case, check, seed):
    result = run((bug,), seed=seed, max_examples=2)
    hits = [f for f in result.findings if f.operation == operation and f.check == check]
    assert hits, result.summary()
    assert case in {f.source for f in hits}, result.summary()
    finding = hits[0]
    assert finding.curl.startswith("curl -X POST") and "/items" in finding.curl
    assert "Authorization: Bearer secret" in finding.curl
    if check == "not_a_server_error":
        assert finding.status == 500 and finding in result.server_errors


def test_contract_breaches_are_found_by_generated_cases():
    result = run(("wrong_response_schema",), seed=5)
    assert result.by_check("response_schema_conformance"), result.summary()
    result = run(("undocumented_status",), seed=5)
    teapots = result.by_check("status_code_conformance")
    assert teapots and {f.status for f in teapots} == {418}, result.summary()


def test_the_finding_reproduces_with_its_curl():
    import shlex
    import subprocess

    result = run(("surrogate_500",), seed=1, max_examples=1)
    finding = next(f for f in result.server_errors if f.source == "explicit:name: lone surrogate")
    assert "\\ud800" in finding.curl  # sent as the JSON escape, exactly as the fuzzer did
    with Served(make_app(frozenset({"surrogate_500"}))) as url:
        argv = shlex.split(finding.curl)
        argv[-1] = url + "/items"  # the same request to a fresh server
        out = subprocess.run(argv + ["-s", "-o", "/dev/null", "-w", "%{http_code}"], capture_output=True,
                             text=True, timeout=30)
    assert out.stdout == "500"


def test_same_seed_same_requests():
    a, b = run(seed=9, explicit=False), run(seed=9, explicit=False)
    assert a.requests == b.requests and a.per_operation == b.per_operation


def test_bad_options_and_unreachable_schema_are_errors_that_say_what_to_do():
    with pytest.raises(ConfigError, match="max_examples"):
        FuzzEngine({"openapi": "3.1.0", "info": {"title": "x", "version": "1"}, "paths": {}},
                   base_url="http://127.0.0.1:9", max_examples=0)
    with pytest.raises(ConfigError, match="unknown Schemathesis check"):
        FuzzEngine({"openapi": "3.1.0", "info": {"title": "x", "version": "1"}, "paths": {}},
                   base_url="http://127.0.0.1:9", checks=("no_such_check",))
    with pytest.raises(ConfigError, match="base_url"):
        FuzzEngine({"openapi": "3.1.0", "info": {"title": "x", "version": "1"}, "paths": {}})
    with pytest.raises(TargetError, match="OpenAPI schema"):
        fuzz("http://127.0.0.1:9/openapi.json", request_timeout=2.0)


def test_curl_of_an_unprintable_body_replays_its_exact_bytes():
    import subprocess

    import requests

    from renderchaos.probes.fuzz import _curl

    body = b'{"a": "\x00\x01\xff\\ it\'s 100%"}'
    prepared = requests.Request("POST", "http://127.0.0.1:9/x", data=body).prepare()
    command = _curl(prepared)
    assert "printf '%b'" in command
    printf = command[command.index("@<(") + 3:command.rindex(")")]
    assert subprocess.run(["bash", "-c", printf], capture_output=True, timeout=10).stdout == body


def test_stateful_phase_follows_the_schema_links():
    """GET /items/{id} answers 200 only for the id POST /items returned: reached through the link."""
    without = run(seed=4, max_examples=1, explicit=False)
    with_links = run(seed=4, max_examples=1, explicit=False, stateful_examples=10)
    assert 200 not in without.per_operation_statuses.get("GET /items/{item_id}", {})
    assert with_links.per_operation_statuses["GET /items/{item_id}"][200] > 0, with_links.summary()
    assert not with_links.findings, with_links.summary()
