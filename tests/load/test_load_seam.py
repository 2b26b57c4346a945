"""The load test behind the platform seam, without Locust or containers: the platform spec
handed to Locust, what each operation counts as a failure, the load.chaos schedule bound by
role (skipping what the target lacks), the ledger feed, and no reference-stack endpoint
anywhere in the load code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest

from renderchaos.errors import ConfigError
from renderchaos.faults.container import Killed
from renderchaos.faults.network import RouteDown
from renderchaos.faults.spec import Described, Kill, Partition, Stop
from renderchaos.load import ops
from renderchaos.load.harness import OneAfterAnother, account_of, chaos_schedule
from renderchaos.load.platform import ENV, PlatformSpec, adapter_name
from renderchaos.load.runner import LoadRun
from renderchaos.platforms.base import (
    Account, Answer, ApiError, ErrorKind, Feature, Health, Job, JobState, Platform, PlatformEndpoint, RenderRequest,
)
from renderchaos.platforms.refstack import RefstackPlatform
from renderchaos.target import Target

ROOT = Path(__file__).resolve().parents[2]


class TinyPlatform(Platform):
    """A platform with no optional group: what the load test may rely on from any adapter."""

    name: ClassVar[str] = "tiny"
    features: ClassVar[frozenset[Feature]] = frozenset()

    def health(self) -> Health:
        return Health(True, 200)

    def open_account(self, name: str = "renderchaos", credits: int | None = None) -> Account:
        return Account("only")

    def submit(self, account: Account, request: RenderRequest) -> Answer[str]:
        return Answer(202, 0.01, "j1")

    def job(self, account: Account, job_id: str) -> Answer[Job]:
        return Answer(200, 0.01, Job(job_id, JobState.PENDING))

    def list_jobs(self, account: Account, limit: int = 20) -> Answer[list[Job]]:
        return Answer(200, 0.01, [])

    def observe_job(self, job_id: str) -> Job | None:
        return None


class Handle:
    def __init__(self, name: str) -> None:
        self.name = name


# ---------------------------------------------------------------------------------------
def test_spec_round_trips_through_json_and_builds_the_adapter(tmp_path: Path) -> None:
    endpoint = PlatformEndpoint("http://127.0.0.1:8123", "tok", urls={"provider_control": "http://127.0.0.1:9"},
                                host_dirs={"assets": tmp_path}, settings={"storage_mount": "/data", "n": [1, 2]})
    platform = RefstackPlatform(endpoint, timeout=7.5)
    try:
        spec = PlatformSpec.of(platform)
    finally:
        platform.close()
    assert spec.adapter == "refstack"  # the registered name, not a module path
    back = PlatformSpec.from_json(spec.to_json())
    assert back == spec and back.timeout == 7.5
    built = back.build()
    try:
        assert isinstance(built, RefstackPlatform) and built.endpoint == endpoint and built.timeout == 7.5
    finally:
        built.close()
    assert "tok" not in spec.describe()


def test_an_unregistered_adapter_travels_as_module_and_class() -> None:
    assert adapter_name(TinyPlatform) == f"{__name__}:TinyPlatform"
    spec = PlatformSpec.of(TinyPlatform(PlatformEndpoint("http://127.0.0.1:1")))
    assert PlatformSpec.from_json(spec.to_json()).platform_class() is TinyPlatform


@pytest.mark.parametrize("raw, match", [
    ("{nope", "not JSON"), ("[1]", "JSON object"), ('{"adapter": "refstack"}', "api_url"),
    ('{"adapter": "refstack", "api_url": "http://x", "host": 1}', "unknown keys"),
])
def test_a_bad_spec_is_a_config_error(raw: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        PlatformSpec.from_json(raw)


def test_an_unknown_adapter_names_the_registered_ones() -> None:
    with pytest.raises(ConfigError, match="refstack"):
        PlatformSpec(adapter="nosuch", api_url="http://127.0.0.1:1").build()


def test_settings_that_are_not_json_are_refused() -> None:
    with pytest.raises(ConfigError, match="as JSON"):
        PlatformSpec(adapter="refstack", api_url="http://x", settings={"f": object()}).to_json()


def test_the_token_goes_to_the_environment_not_argv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RENDERCHAOS_ADMIN_TOKEN", "stale")
    run = LoadRun(platform=PlatformSpec("refstack", "http://127.0.0.1:1", admin_token="s3cret"), out_dir=tmp_path)
    assert not any("s3cret" in a for a in run.command())
    env = run.env()
    assert json.loads(env[ENV])["admin_token"] == "s3cret" and "RENDERCHAOS_ADMIN_TOKEN" not in env


# ---------------------------------------------------------------------------------------
def refused(kind: ErrorKind, status: int, code: str | None = None, retry: float | None = None) -> Answer[Any]:
    return Answer(status, 0.2, error=ApiError(kind, status, code, "message with an id 1234", retry_after=retry))


def test_what_each_operation_counts_as_a_failure() -> None:
    assert ops.accepted(Answer(202, 0.1, "j1")) is None
    assert ops.accepted(Answer(202, 0.1, "")) == "202 accepted without a job id"
    assert ops.accepted(refused(ErrorKind.RATE_LIMITED, 429, "rate_limited", 1.0)) == "429 rate_limited rate_limited"
    assert ops.accepted(Answer(None, 5.0, transport_error="ReadTimeout: timed out")) == "no answer (ReadTimeout)"
    check = ops.the_job("j1")
    assert check(Answer(200, 0.1, Job("j1", JobState.FAILED))) is None  # a failed render is a valid answer
    assert check(Answer(200, 0.1, Job("j2", JobState.COMPLETED))) == "200 answer is another job"
    assert check(refused(ErrorKind.NOT_FOUND, 404)) == "404 not_found"
    assert ops.jobs_list(Answer(200, 0.1, [])) is None
    assert ops.jobs_list(Answer(200, 0.1, None)) == "200 answer is not a list of jobs"
    assert ops.output_bytes(Answer(200, 0.1, b"\0" * 10)) is None
    assert ops.output_bytes(Answer(200, 0.1, b"")) == "200 empty download"
    assert ops.healthy(Health(True, 200)) is None
    assert ops.healthy(Health(False, 503, ("database",))) == "503 unhealthy database"
    assert ops.length(Answer(200, 0.1, b"abc")) == 3


def test_failure_texts_do_not_carry_the_message() -> None:
    """Locust groups failures by their text: ids or timings in it would make one row per request."""
    text = ops.accepted(refused(ErrorKind.SERVER_ERROR, 500, "internal_error"))
    assert text == "500 server_error internal_error" and "1234" not in text


# ---------------------------------------------------------------------------------------
PROVIDER = Described("the AI provider rate-limits every key", (Feature.AI_JOBS.value, "provider_control"))
SPECS = (Kill("worker", 0), Partition("database"), Stop("cache"), Stop("broker"), PROVIDER)


def target(**kw: Any) -> Target:
    return Target(name="t", kind="external", platform=TinyPlatform(PlatformEndpoint("http://127.0.0.1:1")), **kw)


def test_schedule_binds_by_role_and_reports_what_it_skips() -> None:
    t = target(proxy_url="http://127.0.0.1:2", routes={"database": "pg-route"},
               services={"worker": [Handle("w0"), Handle("w1")]})  # type: ignore[list-item]
    s = chaos_schedule(t, OneAfterAnother(SPECS), {PROVIDER: lambda: pytest.fail("not applicable")})
    assert [f.name for f in s.faults] == ["worker killed", "database partitioned"]
    kill = s.faults[0].make()
    assert [type(f) for f in kill.faults] == [Killed] and kill.faults[0].service.name == "w0"  # type: ignore[attr-defined]
    down = s.faults[1].make()
    assert isinstance(down, RouteDown) and down.route == "pg-route" and down.proxy_url == "http://127.0.0.1:2"
    assert s.skipped == ["cache stopped: target 't' lacks ['containers:cache']",
                         "broker stopped: target 't' lacks ['containers:broker']",
                         "the AI provider rate-limits every key: target 't' lacks ['ai_jobs', 'provider_control']"]
    assert "skipped" in s.describe()


def test_schedule_on_a_target_with_nothing_to_break_is_empty() -> None:
    s = chaos_schedule(target(), SPECS)
    assert s.faults == [] and len(s.skipped) == 5


def test_a_described_fault_needs_its_concrete_fault() -> None:
    class AiPlatform(TinyPlatform):
        features: ClassVar[frozenset[Feature]] = frozenset({Feature.AI_JOBS})

    t = Target(name="t", kind="external",
               platform=AiPlatform(PlatformEndpoint("http://127.0.0.1:1", urls={"provider_control": "http://c"})))
    with pytest.raises(ConfigError, match="concrete fault"):
        chaos_schedule(t, (PROVIDER,))
    made: list[str] = []
    s = chaos_schedule(t, (PROVIDER,), {PROVIDER: lambda: made.append("x") or "fault"})  # type: ignore[dict-item]
    assert s.faults[0].make() == "fault" and made == ["x"]


def test_the_catalog_schedule_needs_nothing_by_itself() -> None:
    from scenarios import load as L

    (sched,) = L.CHAOS.faults
    assert isinstance(sched, OneAfterAnother) and sched.faults == L.LOAD_CHAOS_FAULTS
    assert L.CHAOS.requirements() == () and L.BASELINE.requirements() == ()
    with pytest.raises(ConfigError):
        sched.bind(target())


def test_ledger_feed_keeps_the_owner() -> None:
    rec = {"job_id": "j", "kind": "render", "account": {"id": "u1", "api_key": "k", "credits": 5,
                                                         "extra": {"phone": "1"}}}
    assert account_of(rec) == Account("u1", "k", 5, {"phone": "1"})
    assert account_of({"job_id": "j"}) is None


# ---------------------------------------------------------------------------------------
ENDPOINTS = ("/admin/", "/v1/videos", "/api/v1/")
LOAD_FILES = [*sorted((ROOT / "renderchaos" / "load").glob("*")), ROOT / "suites" / "test_load.py",
              ROOT / "benchmarks" / "load_capacity.py", ROOT / "scenarios" / "load.py"]


@pytest.mark.parametrize("path", [p for p in LOAD_FILES if p.is_file()], ids=lambda p: str(p.relative_to(ROOT)))
def test_load_code_names_no_reference_stack_endpoint(path: Path) -> None:
    text = path.read_text(errors="replace")
    assert [e for e in ENDPOINTS if e in text] == []
