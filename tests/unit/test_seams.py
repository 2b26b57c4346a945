"""The seams, without containers: waits, adapters over httpx's mock transport, network faults
over a mock Toxiproxy, the target's capabilities, adapter discovery, compose parsing."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from renderchaos.errors import ConfigError, FaultHealError, FaultInjectionError, WaitTimeout
from renderchaos.platforms import load_platform, platform_class
from renderchaos.platforms.base import Account, ErrorKind, Feature, JobState, PlatformEndpoint, RenderRequest
from renderchaos.platforms.refstack.adapter import RefstackPlatform
from renderchaos.target import MissingCapability, Target
from renderchaos.wait import Deadline, Poll, wait_for
from tests.unit.fakes import FakePlatform


# -- waits ---------------------------------------------------------------------------------
def test_wait_for_names_what_it_waited_for_and_the_last_observation() -> None:
    with pytest.raises(WaitTimeout) as info:
        wait_for(lambda: 0, what="the answer to be 42", timeout=0.2, poll=Poll(0.05))
    assert "waiting for the answer to be 42" in str(info.value) and "returned 0" in str(info.value)
    assert info.value.what == "the answer to be 42" and info.value.timeout == pytest.approx(0.2)


def test_composite_waits_share_one_deadline() -> None:
    deadline = Deadline.after(0.3)
    t0 = time.monotonic()
    for _ in range(3):
        with pytest.raises(WaitTimeout):
            wait_for(lambda: False, what="never", timeout=deadline, poll=Poll(0.05))
    assert time.monotonic() - t0 < 0.6  # three waits, one 0.3 s budget


def test_tolerated_errors_mean_not_yet_others_escape() -> None:
    calls = iter([OSError("refused"), OSError("refused"), "up"])

    def check() -> str:
        v = next(calls)
        if isinstance(v, Exception):
            raise v
        return v

    assert wait_for(check, what="up", timeout=2, poll=Poll(0.01, tolerate=(OSError,))) == "up"
    with pytest.raises(KeyError):
        wait_for(lambda: {}["x"], what="x", timeout=1, poll=Poll(0.01, tolerate=(OSError,)))


# -- the reference adapter over a mock transport ----------------------------------------------
def _refstack(handler) -> RefstackPlatform:  # noqa: ANN001
    # a mock transport behind the adapter's own clients (a unit test of our own code)
    return RefstackPlatform(PlatformEndpoint("http://api.test", admin_token="t"), transport=httpx.MockTransport(handler))


@pytest.mark.parametrize("status, body, kind, extra", [
    (401, {"error": {"code": "unauthorized", "message": "missing header"}}, ErrorKind.UNAUTHORIZED, {}),
    (400, {"error": {"code": "invalid_parameter", "message": "x", "field": "data.price"}}, ErrorKind.INVALID_PARAMETER,
     {"field": "data.price"}),
    (429, {"error": {"code": "rate_limit_exceeded", "message": "slow down", "retry_after": 3}},
     ErrorKind.RATE_LIMITED, {"retry_after": 3.0}),
    (503, {"error": {"code": "database_unavailable", "message": "db"}}, ErrorKind.DEPENDENCY_UNAVAILABLE,
     {"dependency": "database"}),
    (503, {"error": {"code": "broker_unavailable", "message": "mq"}}, ErrorKind.DEPENDENCY_UNAVAILABLE,
     {"dependency": "broker"}),
    (402, {"success": False, "message": "poor", "error_code": "INSUFFICIENT_CREDITS"}, ErrorKind.INSUFFICIENT_CREDITS,
     {}),
    (404, {"success": False, "message": "nope", "error_code": "NOT_FOUND"}, ErrorKind.NOT_FOUND, {}),
    (500, "Internal Server Error", ErrorKind.SERVER_ERROR, {}),
])
def test_refstack_refusals_are_normalised(status: int, body, kind: ErrorKind, extra: dict) -> None:  # noqa: ANN001
    p = _refstack(lambda req: httpx.Response(status, json=body) if isinstance(body, dict)
                  else httpx.Response(status, text=body))
    answer = p.submit(Account("u", "key"), RenderRequest())
    assert answer.error is not None and answer.error.kind is kind and answer.status == status
    for k, v in extra.items():
        assert getattr(answer.error, k) == v


def test_refstack_jobs_are_normalised_and_no_answer_is_not_an_error_code() -> None:
    record = {"id": "j1", "status": "failed", "error_code": "invalid_media", "progress": 12.5, "attempts": 1,
              "started_at": "2026-01-01T00:00:00+00:00", "finished_at": "2026-01-01T00:00:03+00:00",
              "result": {"segments": 2}, "cost": 5, "worker": "w@x:1", "output_path": None}
    p = _refstack(lambda req: httpx.Response(200, json=record))
    job = p.observe_job("j1")
    assert job is not None and job.state is JobState.FAILED and job.error_code == "invalid_media"
    assert job.run_seconds == 3.0 and job.metrics == {"segments": 2, "cost": 5} and job.terminal

    def down(req: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=req)

    p = _refstack(down)
    answer = p.submit(Account("u", "k"), RenderRequest())
    assert answer.status is None and "refused" in (answer.transport_error or "") and not answer.ok


def test_a_render_request_becomes_the_template_body() -> None:
    from renderchaos.platforms.base import Asset

    p = RefstackPlatform(PlatformEndpoint("http://api.test", admin_token="t"))
    body = p.body(RenderRequest(title="t", duration=3, width=640, height=360, input=Asset("a/b.mp4"), preset="fast"))
    assert body["template_id"] and body["input_asset"] == "a/b.mp4" and body["data"]["preset"] == "fast"
    assert (body["data"]["duration"], body["data"]["width"]) == (3, 640)


# -- network faults over a mock Toxiproxy -------------------------------------------------------
def test_route_faults_map_proxy_errors_to_fault_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    from renderchaos.faults import network
    from renderchaos_proxy.client import ToxiproxyClient

    seen: list[tuple[str, str, dict]] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append((req.method, req.url.path, json.loads(req.content or b"{}")))
        if req.url.path == "/proxies/db":
            return httpx.Response(200, json={"name": "db", "listen": "127.0.0.1:1", "upstream": "127.0.0.1:2",
                                             "enabled": True, "toxics": []})
        if req.url.path.endswith("/toxics") and req.method == "POST":
            return httpx.Response(200, json={"name": "t", "type": "latency", "stream": "downstream", "toxicity": 1,
                                             "attributes": {"latency": 1000}})
        return httpx.Response(404, json={"error": "proxy not found", "status": 404})

    monkeypatch.setattr(network, "_client",
                        lambda url: ToxiproxyClient(url, timeout=1.0, transport=httpx.MockTransport(handler)))
    network.RouteToxic("http://proxy.test", "db", "latency", attributes={"latency": 1000}).inject()
    assert seen[-1][0] == "POST" and seen[-1][2]["attributes"] == {"latency": 1000}
    with pytest.raises(FaultInjectionError, match="nope"):
        network.RouteDown("http://proxy.test", "nope").inject()
    with pytest.raises(FaultHealError, match="nope"):
        network.RouteDown("http://proxy.test", "nope").heal()


# -- the target ---------------------------------------------------------------------------------
def test_capabilities_follow_the_adapter_and_the_fault_surface() -> None:
    t = Target("t", "external", FakePlatform(), proxy_url="http://p", routes={"database": "pg"},
               services={"worker": []}, disposable=False)
    assert t.has(Feature.CREDITS, "fault_proxy:database") and not t.has("fault_proxy:cache")
    assert not t.has("containers:worker")  # listed, but the deployment is not disposable
    with pytest.raises(MissingCapability, match="disposable = true"):
        t.require("containers:worker")
    with pytest.raises(MissingCapability, match=r"lacks \['live'\]"):
        t.require("live")


def test_adapters_are_found_by_name_or_module_path_with_clear_errors() -> None:
    assert platform_class("refstack") is RefstackPlatform
    assert platform_class("tests.unit.fakes:FakePlatform").name == "fake"
    with pytest.raises(ConfigError, match="no platform adapter named 'nope'; registered: .*refstack"):
        platform_class("nope")
    with pytest.raises(ConfigError, match="cannot load platform adapter"):
        platform_class("no.such.module:Thing")
    with pytest.raises(ConfigError, match="not a subclass"):
        platform_class("renderchaos.wait:Wait")
    assert load_platform("tests.unit.fakes:FakePlatform", PlatformEndpoint("http://x")).name == "fake"


# -- compose files --------------------------------------------------------------------------------
def _compose(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "docker-compose.yml"
    p.write_text(text)
    return p


GOOD = """
x-renderchaos:
  platform: tests.unit.fakes:FakePlatform
  api: {service: api}
services:
  db:
    image: postgres:15
    environment: {PGPORT: "${RENDERCHAOS_PORT}"}
    x-renderchaos: {role: database}
  api:
    image: example/api
    ports: ["8000:8000"]
    depends_on: [db]
    environment:
      DATABASE_URL: postgresql://app:secret@db:5432/app
      PORT: "${RENDERCHAOS_PORT}"
    x-renderchaos: {role: [api, worker], depends: {DATABASE_URL: db}, ready: {http: /health}}
"""


def test_a_compose_file_is_read_with_its_roles_and_order(tmp_path: Path) -> None:
    from renderchaos.provisioning.compose import load_compose

    spec = load_compose(_compose(tmp_path, GOOD))
    assert spec.platform == "tests.unit.fakes:FakePlatform" and spec.api_service == "api"
    assert spec.services["api"].roles == ("api", "worker") and spec.services["api"].depends == {"DATABASE_URL": "db"}
    assert [[s.name for s in w] for w in spec.order()] == [["db"], ["api"]]
    assert any("ports" in n for n in spec.notes)


@pytest.mark.parametrize("edit, message", [
    (("image: example/api", "image: example/api\n    privileged: true"), "unsupported key(s) ['privileged']"),
    (("role: database", "role: databse"), "unknown role(s) ['databse']"),
    (("depends: {DATABASE_URL: db}", "depends: {DATABASE_URL: pg}"), "names 'pg', not a service"),
    (("api: {service: api}", "api: {service: web}"), "x-renderchaos.api.service must name one of"),
    (("depends_on: [db]", "depends_on: [cache]"), "unknown service(s) ['cache']"),
])
def test_compose_mistakes_are_named(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    from renderchaos.provisioning.compose import load_compose

    with pytest.raises(ConfigError) as info:
        load_compose(_compose(tmp_path, GOOD.replace(*edit)))
    assert message in str(info.value)


def test_compose_variables_and_dependency_rerouting() -> None:
    from renderchaos.provisioning.compose import _reroute, interpolate

    assert interpolate("${RENDERCHAOS_PORT}-${MISSING:-x}-$$", {"RENDERCHAOS_PORT": "1"}, "w") == "1-x-$"
    with pytest.raises(ConfigError, match=r"\$\{NOPE\} is not set"):
        interpolate("${NOPE}", {}, "services.api.environment.X")
    assert _reroute("postgresql://a:b@db:5432/app", "db", "127.0.0.1:9", 5432) == "postgresql://a:b@127.0.0.1:9/app"
    assert _reroute("redis://127.0.0.1:6379/0", "cache", "127.0.0.1:9", 6379) == "redis://127.0.0.1:9/0"
    with pytest.raises(ConfigError, match="does not name 'db'"):
        _reroute("postgresql://a:b@dbx:5432/app", "db", "127.0.0.1:9", 5433)


# -- setup's proof ------------------------------------------------------------------------------
@pytest.mark.parametrize("engine_says, names", [
    ("container create: container-init binary not found on the host: stat /usr/libexec/podman/catatonit", "catatonit"),
    ("OCI runtime error: crun: cgroups in hybrid mode are not supported", "runc"),
    ("Error: image not known", "renderchaos.provisioning.engine build"),
])
def test_setup_names_the_missing_piece(engine_says: str, names: str) -> None:
    from renderchaos.provisioning.proof import explain

    assert names in explain(engine_says)
