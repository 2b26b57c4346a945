"""Clients: our typed client, the PyPI ``toxiproxy-python`` client, and the CLI server."""

from __future__ import annotations

import json
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from proxy_helpers import EFFECT_TIMEOUT, Upstream, connect, round_trip
from renderchaos.errors import ProxyError
from renderchaos.wait import Poll, wait_for
from renderchaos_proxy.client import Proxy, ToxiproxyClient
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


def test_client_errors_are_proxy_errors(api: ToxiproxyClient):
    with pytest.raises(ProxyError) as info:
        api.get_proxy("missing")
    assert info.value.status == 404 and info.value.url.endswith("/proxies/missing")
    assert "proxy not found" in str(info.value)
    clone = pickle.loads(pickle.dumps(info.value))
    assert clone.status == 404 and clone.url == info.value.url


def test_client_unreachable_maps_with_cause():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: refused
        with ToxiproxyClient(f"http://127.0.0.1:{port}", timeout=1.0) as client:
            with pytest.raises(ProxyError) as info:
                client.version()
    assert info.value.status is None and isinstance(info.value.__cause__, httpx.HTTPError)


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
