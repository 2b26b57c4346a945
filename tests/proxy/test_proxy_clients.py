"""Clients: our typed client, the PyPI ``toxiproxy-python`` client, and the CLI server."""

from __future__ import annotations

import ast
import json
import pickle
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from proxy_helpers import EFFECT_TIMEOUT, Upstream, connect, round_trip
from renderchaos.errors import FaultHealError, FaultInjectionError
from renderchaos.faults.network import RouteDown, RouteToxic
from renderchaos.provisioning.stack.routes import ExtraRoute
from renderchaos.wait import Poll, wait_for
from renderchaos_proxy.client import Proxy, ToxiproxyClient
from renderchaos_proxy.errors import (
    BadRequest,
    Conflict,
    HealError,
    NotFound,
    ServerError,
    ToxiproxyError,
    Unreachable,
)
from renderchaos_proxy.server import ServerThread

REPO = Path(__file__).resolve().parents[2]


# -- our client ------------------------------------------------------------------------
def test_client_basics(api: ToxiproxyClient, echo: Upstream):
    assert api.version() == "2.12.0"
    proxy = api.create_proxy("c", listen="127.0.0.1:0", upstream=echo.address)
    assert isinstance(proxy, Proxy) and proxy.listen_port > 0
    assert api.get_proxy("c") == proxy
    assert set(api.proxies()) == {"c"}
    toxic = proxy.add_toxic("latency", latency=5)
    assert toxic.name == "latency_downstream" and toxic.attributes == {"latency": 5, "jitter": 0}
    assert proxy.list_toxics() == [toxic]
    assert proxy.refresh().toxics == [toxic]
    api.reset()
    assert proxy.refresh().toxics == []
    populated = api.populate([{"name": "c", "listen": proxy.listen, "upstream": echo.address}, Proxy("d", "127.0.0.1:0", echo.address)])
    assert [p.name for p in populated] == ["c", "d"]


def test_client_errors_have_a_class_per_status(api: ToxiproxyClient, echo: Upstream):
    with pytest.raises(NotFound) as info:
        api.get_proxy("missing")
    assert info.value.status == 404 and info.value.url.endswith("/proxies/missing")
    assert "proxy not found" in str(info.value)
    clone = pickle.loads(pickle.dumps(info.value))
    assert type(clone) is NotFound and clone.status == 404 and clone.url == info.value.url
    assert str(clone) == str(info.value)
    proxy = api.create_proxy("e", upstream=echo.address)
    with pytest.raises(Conflict) as conflict:
        api.create_proxy("e", upstream=echo.address)
    assert conflict.value.status == 409
    with pytest.raises(BadRequest) as bad:
        proxy.add_toxic("no_such_type")
    assert bad.value.status == 400 and "invalid toxic type" in str(bad.value)
    with pytest.raises(ServerError) as server:  # e's own port is in use
        api.create_proxy("f", listen=proxy.listen, upstream=echo.address)
    assert server.value.status == 500 and "address already in use" in str(server.value)
    for exc in (info.value, conflict.value, bad.value, server.value):
        assert isinstance(exc, ToxiproxyError)


def _refused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # closed again: connecting is refused


def test_client_unreachable_maps_with_cause():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: refused
        with ToxiproxyClient(f"http://127.0.0.1:{port}", timeout=1.0) as client:
            with pytest.raises(Unreachable) as info:
                client.version()
    assert info.value.status is None and isinstance(info.value.__cause__, httpx.HTTPError)


def test_failed_heal_is_a_heal_error(api: ToxiproxyClient, echo_proxy):
    with pytest.raises(HealError) as info:
        with echo_proxy.down():
            echo_proxy.delete()  # nothing left to re-enable
    assert info.value.proxy == "echo" and info.value.status == 404
    assert isinstance(info.value.__cause__, NotFound)
    clone = pickle.loads(pickle.dumps(info.value))
    assert (clone.proxy, clone.toxic, clone.status, clone.url) == ("echo", None, 404, info.value.url)


def test_package_imports_nothing_from_the_harness():
    """renderchaos_proxy stands alone: importing every module of it loads no renderchaos module."""
    probe = textwrap.dedent("""
        import importlib, importlib.abc, pkgutil, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "renderchaos" or name.startswith("renderchaos."):
                    raise ImportError(f"renderchaos_proxy imported {name}")

        sys.meta_path.insert(0, Block())
        import renderchaos_proxy
        names = [m.name for m in pkgutil.iter_modules(renderchaos_proxy.__path__, "renderchaos_proxy.")]
        for name in names:
            importlib.import_module(name)
        leaked = sorted(m for m in sys.modules if m == "renderchaos" or m.startswith("renderchaos."))
        assert not leaked, leaked
        print(len(names))
    """)
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) >= 6  # client, errors, link, proxy, server, toxics
    # imports inside functions only run when called: read the source as well
    for path in (REPO / "renderchaos_proxy").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            assert not [n for n in names if n == "renderchaos" or n.startswith("renderchaos.")], (path, names)


# -- the harness boundary: proxy errors become renderchaos errors, with their cause -----------------
def test_harness_maps_proxy_errors(proxy_server: ServerThread, api: ToxiproxyClient, echo: Upstream):
    with pytest.raises(FaultInjectionError) as info:
        RouteDown(proxy_server.url, "missing").inject()
    assert isinstance(info.value.__cause__, NotFound) and info.value.status == 404
    clone = pickle.loads(pickle.dumps(info.value))
    assert clone.status == 404 and clone.url == info.value.url
    with pytest.raises(FaultHealError) as info:
        RouteToxic(proxy_server.url, "missing", "latency").heal()
    assert isinstance(info.value.__cause__, NotFound)
    route = ExtraRoute(proxy_server.url, "extra", upstream_port=echo.port)
    route.inject()
    with pytest.raises(FaultInjectionError) as info:
        ExtraRoute(proxy_server.url, "extra", upstream_port=echo.port).inject()
    assert isinstance(info.value.__cause__, Conflict) and info.value.status == 409
    route.heal()
    assert "extra" not in api.proxies()
    with pytest.raises(FaultHealError) as info:
        ExtraRoute(_refused_url(), "extra", upstream_port=echo.port).heal()
    assert isinstance(info.value.__cause__, Unreachable) and info.value.status is None


def test_toxic_context_heals_on_exception(echo_proxy):
    with pytest.raises(RuntimeError):
        with echo_proxy.toxic("timeout", timeout=0):
            assert len(echo_proxy.list_toxics()) == 1
            raise RuntimeError("scenario failed inside the fault")
    assert echo_proxy.list_toxics() == []


def test_down_context_heals_on_exception(echo_proxy):
    with pytest.raises(RuntimeError):
        with echo_proxy.down():
            assert echo_proxy.refresh().enabled is False
            raise RuntimeError("boom")
    assert echo_proxy.refresh().enabled is True
    with connect(echo_proxy) as sock:
        assert round_trip(sock) == b"ping"


def test_toxic_context_tolerates_reset_inside(api: ToxiproxyClient, echo_proxy):
    with echo_proxy.toxic("latency", latency=1):
        api.reset()  # the toxic is gone already: leaving the block is still fine


# -- toxiproxy-python (PyPI) against our server -------------------------------------------
@pytest.fixture
def toxiproxy_python(proxy_server: ServerThread, api: ToxiproxyClient):
    import toxiproxy  # the dev extra's toxiproxy-python: a missing install must fail, not skip
    from toxiproxy.api import APIConsumer

    saved = (APIConsumer.host, APIConsumer.port)  # the library keeps host/port as class globals
    server = toxiproxy.Toxiproxy()
    server.update_api_consumer(proxy_server.host, proxy_server.port)
    try:
        yield server
    finally:
        APIConsumer.host, APIConsumer.port = saved


def test_toxiproxy_python_drives_our_server(toxiproxy_python, echo: Upstream):
    from toxiproxy.exceptions import NotFound, ProxyExists

    server = toxiproxy_python
    assert server.running()
    assert b"2.12.0" in server.version()
    proxy = server.create(upstream=echo.address, name="tp")
    assert proxy.name == "tp" and proxy.enabled is True
    with pytest.raises(ProxyExists):
        server.create(upstream=echo.address, name="tp")
    listen = server.get_proxy("tp").listen
    host, port = listen.rsplit(":", 1)
    proxy.add_toxic(type="latency", attributes={"latency": 120})
    assert set(proxy.toxics()) == {"latency_downstream"}
    assert proxy.get_toxic("latency_downstream").attributes == {"latency": 120, "jitter": 0}
    with socket.create_connection((host, int(port)), timeout=EFFECT_TIMEOUT) as sock:
        import time

        start = time.perf_counter()
        assert round_trip(sock) == b"ping"
        assert time.perf_counter() - start >= 0.12
    assert proxy.destroy_toxic("latency_downstream")
    with pytest.raises(NotFound):
        proxy.destroy_toxic("latency_downstream")
    with proxy.down():
        assert server.get_proxy("tp").enabled is False
    assert server.get_proxy("tp").enabled is True
    populated = server.populate([{"name": "tp2", "upstream": echo.address, "listen": "127.0.0.1:0"}])
    assert [p.name for p in populated] == ["tp2"]
    assert server.reset()
    server.destroy_all()
    assert server.proxies() == {}


# -- the console script / CLI flags ------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("style", ["-", "--"])
def test_cli_flags_and_config(tmp_path: Path, echo: Upstream, style: str):
    config = tmp_path / "toxiproxy.json"
    config.write_text(json.dumps([{"name": "fromcfg", "listen": "127.0.0.1:0", "upstream": echo.address}]))
    port = _free_port()
    cmd = [sys.executable, "-m", "renderchaos_proxy.server", f"{style}host", "127.0.0.1", f"{style}port", str(port),
           f"{style}config", str(config), f"{style}seed", "5"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        with ToxiproxyClient(f"http://127.0.0.1:{port}", timeout=1.0) as client:
            wait_for(client.version, "CLI server answering /version", EFFECT_TIMEOUT, Poll(interval=0.05))
            proxy = client.get_proxy("fromcfg")
            with connect(proxy) as sock:
                assert round_trip(sock) == b"ping"
    finally:
        proc.terminate()
        try:
            proc.wait(EFFECT_TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stderr.close()
    assert proc.returncode == 0


def test_cli_version_flag():
    out = subprocess.run([sys.executable, "-m", "renderchaos_proxy.server", "-version"], cwd=REPO,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "2.12.0" in out.stdout


def test_client_quotes_names(api: ToxiproxyClient, echo: Upstream):
    proxy = api.create_proxy("odd name/with?chars", upstream=echo.address)
    assert api.get_proxy("odd name/with?chars").name == "odd name/with?chars"
    with proxy.toxic("latency", name="t 1/x", latency=1):
        assert [t.name for t in proxy.list_toxics()] == ["t 1/x"]
    assert proxy.list_toxics() == []
