"""Engine choice, addresses and the loopback guard, without containers.

A tiny HTTP server that answers ``/_ping`` and ``/version`` like a Docker (or Podman) engine
stands in for a ``tcp://`` engine: it is our own code's view of an engine that we test here.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from renderchaos.provisioning.engine import engine as E
from renderchaos.errors import ConfigError, EngineError
from renderchaos.provisioning.stack.context import StackContext
from renderchaos.provisioning.stack.reaper import sweep


def _api(components: list[str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = b"OK" if self.path.endswith("/_ping") else json.dumps(
                {"Version": "20.10.24", "Components": [{"Name": n} for n in components]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def fake_engine(request: pytest.FixtureRequest) -> Iterator[str]:
    """``tcp://127.0.0.2:PORT`` answering as the engine named by the test's parameter."""
    components = getattr(request, "param", ["Engine"])
    server = ThreadingHTTPServer(("127.0.0.2", 0), _api(components))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"tcp://127.0.0.2:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private state dir: registering users never touches the machine's shared one."""
    monkeypatch.setattr(E, "STATE_DIR", tmp_path)
    monkeypatch.setattr(E, "USERS_DIR", tmp_path / "users")
    monkeypatch.delenv(E.STACK_HOST_ENV, raising=False)
    return tmp_path


@pytest.mark.parametrize("host, expected", [
    ("unix:///run/renderchaos/docker.sock", "127.0.0.1"),
    ("tcp://127.0.0.2:2375", "127.0.0.2"),
    ("tcp://localhost:2375", "127.0.0.1"),
    ("ssh://ci@localhost", "127.0.0.1"),
    ("ssh://ci@127.0.0.3:2222", "127.0.0.3"),
])
def test_stack_address_is_derived_from_the_engine_host(host: str, expected: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(E.STACK_HOST_ENV, raising=False)
    assert E.Engine("docker", host, "docker").stack_host == expected
    assert E.Engine("docker", host, "docker").local is True


def test_stack_address_override_and_remote_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(E.STACK_HOST_ENV, "192.0.2.10")  # TEST-NET-1: never this machine
    engine = E.Engine("docker", "tcp://docker:2375", "docker")
    assert engine.stack_host == "192.0.2.10" and engine.local is False
    monkeypatch.delenv(E.STACK_HOST_ENV)
    with pytest.raises(ConfigError, match="cannot resolve 'no-such-engine.invalid'"):
        E.Engine("docker", "tcp://no-such-engine.invalid:2375", "docker").stack_host


def test_loopback_guard_applies_to_the_stack_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(E.STACK_HOST_ENV, raising=False)
    remote = E.Engine("docker", "tcp://192.0.2.10:2375", "docker")
    with pytest.raises(ConfigError, match=r"(?s)192\.0\.2\.10.*not loopback.*--chaos-allow-remote"):
        E.ensure_engine_loopback(remote, allow_remote=False)
    E.ensure_engine_loopback(remote, allow_remote=True)
    E.ensure_engine_loopback(E.Engine("docker", "tcp://127.0.0.2:2375", "docker"), allow_remote=False)


def test_cli_is_pointed_at_the_engine() -> None:
    assert E.Engine("docker", "tcp://127.0.0.2:2375", "docker").cli_argv() == ["docker", "--host", "tcp://127.0.0.2:2375"]
    assert E.Engine("podman", "unix:///run/renderchaos/podman.sock", "podman").cli_argv() == ["podman"]
    # podman served somewhere without a podman CLI: the docker CLI drives its compatible API
    assert E.Engine("podman", "tcp://127.0.0.2:1", "docker").cli_argv() == ["docker", "--host", "tcp://127.0.0.2:1"]
    assert E.Engine("docker", "tcp://127.0.0.2:1", "docker").cli_env()["DOCKER_BUILDKIT"] == "0"
    kw = E.Engine("docker", "ssh://ci@127.0.0.1", "docker").client_kwargs()
    assert kw["environment"] == {"DOCKER_HOST": "ssh://ci@127.0.0.1"} and kw["use_ssh_client"] is True


def test_unknown_engine_choice_names_the_choices(monkeypatch: pytest.MonkeyPatch, state: Path) -> None:
    monkeypatch.setenv(E.ENGINE_ENV, "containerd")
    with pytest.raises(ConfigError, match="RENDERCHAOS_ENGINE='containerd': choose one of auto, docker, podman"):
        E.find_engine()


def test_docker_choice_uses_a_tcp_engine_and_guards_its_address(
        fake_engine: str, monkeypatch: pytest.MonkeyPatch, state: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", fake_engine)
    engine = E.find_engine(user="t1", kind="docker", allow_remote=False)
    assert (engine.kind, engine.docker_host, engine.stack_host) == ("docker", fake_engine, "127.0.0.2")
    assert (state / "users" / "t1").exists()
    monkeypatch.setenv(E.STACK_HOST_ENV, "192.0.2.10")
    with pytest.raises(ConfigError, match="not loopback"):
        E.find_engine(kind="docker", allow_remote=False)
    assert E.find_engine(kind="docker", allow_remote=True).stack_host == "192.0.2.10"


@pytest.mark.parametrize("fake_engine", [["Podman Engine"]], indirect=True)
def test_docker_choice_refuses_an_engine_that_is_podman(fake_engine: str, monkeypatch: pytest.MonkeyPatch,
                                                       state: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", fake_engine)
    with pytest.raises(EngineError, match=r"RENDERCHAOS_ENGINE=docker but DOCKER_HOST=.* is served by podman"):
        E.find_engine(kind="docker")
    assert E.find_engine(kind="auto").kind == "podman"


def test_docker_choice_with_a_dead_docker_host_says_so(monkeypatch: pytest.MonkeyPatch, state: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.2:1")
    with pytest.raises(EngineError, match=r"DOCKER_HOST=tcp://127.0.0.2:1, which does not answer"):
        E.find_engine(kind="docker")


def test_our_dockerd_listens_on_loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(E.DOCKERD_TCP_ENV, "127.0.0.1:23750")
    argv = E.dockerd_argv()
    assert argv[:3] == ["dockerd", "--host", f"unix://{E.DOCKERD_SOCKET}"] and "tcp://127.0.0.1:23750" in argv
    assert {"--iptables=false", "--bridge=none"} <= set(argv)
    for bad in ("0.0.0.0:2375", "192.0.2.10:2375", "127.0.0.1"):
        monkeypatch.setenv(E.DOCKERD_TCP_ENV, bad)
        with pytest.raises(ConfigError, match="must be a loopback HOST:PORT"):
            E.dockerd_argv()


def test_stack_context_takes_its_address_from_its_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(E.STACK_HOST_ENV, raising=False)
    ctx = StackContext("rtest", "rtest-1", engine=E.Engine("docker", "tcp://127.0.0.2:2375", "docker"))
    try:
        assert ctx.host == "127.0.0.2"
        assert ctx.client_address == "127.0.0.1", "what the stack sees of the harness (rate-limit exemption)"
        ports = {ctx.port() for _ in range(5)}
        assert len(ports) == 5
    finally:
        import shutil

        shutil.rmtree(ctx.tmp_root.parent, ignore_errors=True)


def test_sweep_drives_the_docker_cli_at_the_engine(tmp_path: Path) -> None:
    """``docker rm`` has no ``-t`` (podman's does): the sweep's calls per engine."""
    log = tmp_path / "log"
    cli = tmp_path / "docker"
    cli.write_text(f'#!/bin/sh\necho "$*" >> {log}\ncase "$3 $4" in "ps -aq") echo c1 c2 ;; esac\n')
    cli.chmod(0o755)
    removed = sweep("run1", str(cli), host="tcp://127.0.0.2:2375")
    calls = log.read_text().splitlines()
    assert calls[0] == "--host tcp://127.0.0.2:2375 ps -aq --filter label=renderchaos.run=run1"
    assert calls[1] == "--host tcp://127.0.0.2:2375 rm -f -v c1 c2"
    assert "container c1" in removed
