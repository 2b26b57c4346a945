"""The fuzzing helpers of renderchaos.faults.api, against an in-process app behind httpx's
MockTransport (our own code under test: no platform involved).

The app has the bugs api.fuzz exists to find: a 500 on malformed JSON, on a missing field, on a
lone surrogate in a string, on a null or huge integer, on a name over NAME_MAX; the explicit cases must find each of
them every time, whatever the seed.
"""

from __future__ import annotations

import json

import httpx
import pytest

from renderchaos.faults.api import (
    LONE_SURROGATE, NAME_MAX, FuzzReport, explicit_cases, generated_fuzz, openapi_paths, send_fuzz,
)
from renderchaos.platforms.base import Endpoint

SEED = Endpoint("POST", "/things", "create a thing", {"name": "a", "size": 1, "opts": {"ttl": 3600, "ok": True}})
ADMIN = {"Authorization": "Bearer admin"}
TENANTS = [{"Authorization": f"Bearer t{i}"} for i in range(3)]


def app(bugs: set[str]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        try:
            body = json.loads(request.content or b"{}")
        except ValueError:
            if "malformed" in bugs:
                return httpx.Response(500, text="Traceback (most recent call last):\n  ...")
            return httpx.Response(400, json={"error": {"code": "invalid_parameter", "field": "body"}})
        if not isinstance(body, dict):
            return httpx.Response(400, json={"error": {"code": "invalid_parameter", "field": "body"}})
        if "size" not in body and "missing" in bugs:
            return httpx.Response(500, text="KeyError: 'size'")
        name = body.get("name")
        if isinstance(name, str) and LONE_SURROGATE in name and "surrogate" in bugs:
            return httpx.Response(500, text="UnicodeEncodeError")
        if isinstance(name, str) and len(name) > NAME_MAX and "long_name" in bugs:
            return httpx.Response(500, text="OSError: [Errno 36] File name too long")
        ttl = (body.get("opts") or {}).get("ttl", 1) if isinstance(body.get("opts"), dict) else 1
        if ttl is None and "null" in bugs:
            return httpx.Response(500, text="TypeError")
        if isinstance(ttl, int) and ttl > 10**11 and "huge" in bugs:
            return httpx.Response(500, text="OverflowError")
        return httpx.Response(400, json={"error": {"code": "invalid_parameter"}})

    return httpx.MockTransport(handle)


def run_explicit(bugs: set[str]) -> FuzzReport:
    report = FuzzReport("explicit")
    with httpx.Client(base_url="http://app", transport=app(bugs)) as http:
        for req in explicit_cases([(SEED, None), (Endpoint("PUT", "/admin/x", "admin", {"n": 1}), ADMIN)], TENANTS):
            send_fuzz(http, req, report)
    return report


def test_explicit_cases_cover_every_field_and_malformed_json() -> None:
    cases = explicit_cases([(SEED, None)], TENANTS)
    what = {c.what for c in cases}
    for field in ("name", "size", "opts", "opts.ttl", "opts.ok"):
        assert f"{field}: null" in what and f"{field}: absent" in what
    assert "name: a lone surrogate" in what and f"name: {NAME_MAX + 1} characters" in what
    assert {"opts.ttl: 1000000000000", "opts.ttl: 9223372036854775808", "size: -1"} <= what
    assert sum(1 for w in what if w.startswith("malformed JSON")) >= 6
    # a lone surrogate travels as a JSON escape (valid JSON, not valid Unicode)
    body = next(c.body for c in cases if c.what == "name: a lone surrogate")
    assert body is not None and b'"\\ud800"' in body
    # the tenants' credentials are taken in turn; the seed itself is never mutated
    assert {c.headers["Authorization"] for c in cases} == {b"Bearer t0", b"Bearer t1", b"Bearer t2"}
    assert SEED.json == {"name": "a", "size": 1, "opts": {"ttl": 3600, "ok": True}}


def test_explicit_cases_keep_given_headers() -> None:
    cases = explicit_cases([(Endpoint("PUT", "/admin/x", "admin", {"n": 1}), ADMIN)], TENANTS)
    assert cases and all(c.headers["Authorization"] == b"Bearer admin" for c in cases)


def test_a_correct_app_gives_no_problems() -> None:
    report = run_explicit(set())
    assert report.requests > 30 and not report.problems, report.problems[:3]


@pytest.mark.parametrize("bug", ["malformed", "missing", "surrogate", "long_name", "null", "huge"])
def test_explicit_cases_find_each_bug_every_time(bug: str) -> None:
    report = run_explicit({bug})
    assert report.problems, f"the explicit cases missed the {bug} bug: {report.summary()}"
    assert all("-> 500" in p for p in report.problems)


def test_a_stack_trace_under_a_4xx_is_a_problem() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, text='Traceback (most recent call last):\n  File "app.py", line 3')

    report = FuzzReport("explicit")
    with httpx.Client(base_url="http://app", transport=httpx.MockTransport(handle)) as http:
        send_fuzz(http, explicit_cases([(SEED, None)], TENANTS)[0], report)
    assert report.problems and "stack trace" in report.problems[0]


def test_generated_fuzz_is_seeded_and_bounded() -> None:
    schema = {"paths": {"/things": {"post": {}, "parameters": []}, "/things/{id}": {"get": {}, "delete": {}},
                        "/hooks/hold": {"post": {}}}}
    assert openapi_paths(schema, ("/hooks/",)) == {"/things": ["POST"], "/things/{id}": ["DELETE", "GET"]}
    seen: list[list[str]] = []
    for _ in range(2):
        sent: list[str] = []

        def handle(request: httpx.Request, sent: list[str] = sent) -> httpx.Response:
            sent.append(f"{request.method} {request.url.path} {request.content[:40]!r}")
            return httpx.Response(404, json={"error": {"code": "not_found"}})

        with httpx.Client(base_url="http://app", transport=httpx.MockTransport(handle)) as http:
            report = generated_fuzz(http, schema, ids={"id": "42"}, credentials=TENANTS, seed=7, examples=30,
                                    excluded=("/hooks/",), seed_bodies=[SEED.json])
        assert report.requests == len(sent) and 0 < report.requests <= 30 and not report.problems
        assert not any("/hooks/" in s for s in sent)
        seen.append(sent)
    assert seen[0] == seen[1], "the same seed must send the same requests"


def test_generated_fuzz_reports_a_5xx() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        try:
            json.loads(request.content or b"{}")
        except ValueError:
            return httpx.Response(500, text="boom")
        return httpx.Response(400)

    schema = {"paths": {"/things": {"post": {}}}}
    with httpx.Client(base_url="http://app", transport=httpx.MockTransport(handle)) as http:
        report = generated_fuzz(http, schema, ids={}, credentials=TENANTS, seed=1, examples=100)
    assert report.problems and "-> 500" in report.problems[0]
