"""Conformance of the HTTP API with Toxiproxy 2.12: status codes, shapes, headers, errors."""

from __future__ import annotations

import json
import socket
from typing import Iterator

import httpx
import pytest

from proxy_helpers import EFFECT_TIMEOUT, Upstream, connect, round_trip
from renderchaos.wait import Poll, wait_for
from renderchaos_proxy.client import Proxy as ClientProxy, ToxiproxyClient
from renderchaos_proxy.server import ServerThread

ERROR_CT = "text/plain; charset=utf-8"


@pytest.fixture
def http(proxy_server: ServerThread, api: ToxiproxyClient):
    with httpx.Client(base_url=proxy_server.url, timeout=5) as client:
        yield client


def assert_error(response: httpx.Response, status: int, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == ERROR_CT
    assert response.text.endswith("\n")
    assert json.loads(response.text) == {"error": message, "status": status}


def test_version(http):
    r = http.get("/version")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json;charset=utf-8"
    assert r.json() == {"version": "2.12.0"}


@pytest.mark.parametrize("path", ["/version", "/proxies", "/nope", "/proxies/missing"])
def test_every_response_has_request_id(http, path):
    r = http.get(path)
    assert len(r.headers["x-toxiproxy-request-id"]) >= 16


def test_browser_user_agent_refused(http):
    r = http.get("/proxies", headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64)"})
    assert r.status_code == 403
    assert r.text == "User agent not allowed\n"
    assert r.headers["content-type"] == ERROR_CT
    assert "x-toxiproxy-request-id" in r.headers


def test_put_proxies_is_405_with_empty_body(http):
    r = http.put("/proxies", json={})
    assert r.status_code == 405
    assert r.content == b""


def test_unknown_path_404(http):
    r = http.get("/nothing/here")
    assert r.status_code == 404


def test_create_get_list_delete(http, echo: Upstream):
    r = http.post("/proxies", json={"name": "a", "listen": "127.0.0.1:0", "upstream": echo.address})
    assert r.status_code == 201
    body = r.json()
    assert body["name"] == "a" and body["upstream"] == echo.address and body["enabled"] is True
    assert body["toxics"] == []
    host, port = body["listen"].rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 0  # port 0 -> ephemeral, returned
    assert http.get("/proxies/a").json() == body
    listing = http.get("/proxies").json()
    assert set(listing) == {"a"} and listing["a"]["listen"] == body["listen"]
    r = http.delete("/proxies/a")
    assert r.status_code == 204 and r.content == b""
    assert_error(http.delete("/proxies/a"), 404, "proxy not found")
    assert_error(http.get("/proxies/a"), 404, "proxy not found")


def test_create_errors(http, echo: Upstream):
    assert_error(http.post("/proxies", json={"upstream": echo.address}), 400, "missing required field: name")
    assert_error(http.post("/proxies", json={"name": "x"}), 400, "missing required field: upstream")
    r = http.post("/proxies", content=b"{not json")
    assert r.status_code == 400 and json.loads(r.text)["error"].startswith("bad request body")
    ok = {"name": "dup", "listen": "127.0.0.1:0", "upstream": echo.address}
    assert http.post("/proxies", json=ok).status_code == 201
    assert_error(http.post("/proxies", json=ok), 409, "proxy already exists")


def test_create_unusable_listen_is_500(http, echo: Upstream):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        port = busy.getsockname()[1]
        r = http.post("/proxies", json={"name": "busy", "listen": f"127.0.0.1:{port}", "upstream": echo.address})
        assert r.status_code == 500
        assert "listen tcp" in json.loads(r.text)["error"]
        assert http.get("/proxies/busy").status_code == 404
    finally:
        busy.close()


def test_create_disabled_does_not_listen(http, echo: Upstream):
    r = http.post("/proxies", json={"name": "off", "listen": "127.0.0.1:0", "upstream": echo.address, "enabled": False})
    assert r.status_code == 201 and r.json()["enabled"] is False


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_update_enabled_and_upstream(http, echo: Upstream, make_upstream, method):
    from proxy_helpers import echo_handler

    other = make_upstream(echo_handler)
    created = http.post("/proxies", json={"name": "u", "listen": "127.0.0.1:0", "upstream": echo.address}).json()
    r = http.request(method, "/proxies/u", json={"enabled": False})
    assert r.status_code == 200 and r.json()["enabled"] is False and r.json()["listen"] == created["listen"]
    r = http.request(method, "/proxies/u", json={"enabled": True, "upstream": other.address})
    assert r.status_code == 200 and r.json()["upstream"] == other.address and r.json()["enabled"] is True
    assert_error(http.request(method, "/proxies/nope", json={"enabled": True}), 404, "proxy not found")


def test_toxic_crud(http, echo_proxy):
    base = f"/proxies/{echo_proxy.name}/toxics"
    r = http.post(base, json={"type": "latency", "attributes": {"latency": 10}})
    assert r.status_code == 200  # 200, not 201: Toxiproxy's quirk
    assert r.json() == {
        "name": "latency_downstream", "type": "latency", "stream": "downstream", "toxicity": 1.0,
        "attributes": {"latency": 10, "jitter": 0},
    }
    assert http.get(base).json() == [r.json()]
    assert http.get(f"{base}/latency_downstream").json() == r.json()
    assert http.get(f"/proxies/{echo_proxy.name}").json()["toxics"] == [r.json()]
    r = http.patch(f"{base}/latency_downstream", json={"attributes": {"jitter": 3}, "toxicity": 0.5, "type": "x"})
    assert r.status_code == 200
    assert r.json()["attributes"] == {"latency": 10, "jitter": 3}  # merged, type unchanged
    assert r.json()["toxicity"] == 0.5 and r.json()["type"] == "latency"
    r = http.post(f"{base}/latency_downstream", json={"attributes": {"latency": 20}})
    assert r.json()["attributes"] == {"latency": 20, "jitter": 3}
    assert http.delete(f"{base}/latency_downstream").status_code == 204
    assert http.get(base).json() == []


def test_toxic_defaults_and_names(http, echo_proxy):
    base = f"/proxies/{echo_proxy.name}/toxics"
    r = http.post(base, json={"type": "limit_data", "stream": "upstream"})
    assert r.json() == {"name": "limit_data_upstream", "type": "limit_data", "stream": "upstream",
                        "toxicity": 1.0, "attributes": {"bytes": 0}}
    r = http.post(base, json={"name": "mine", "type": "slicer", "toxicity": 0})
    assert r.json()["name"] == "mine" and r.json()["toxicity"] == 0
    assert r.json()["attributes"] == {"average_size": 0, "size_variation": 0, "delay": 0}


def test_toxic_errors(http, echo_proxy):
    base = f"/proxies/{echo_proxy.name}/toxics"
    assert_error(http.post(base, json={"type": "nope"}), 400, "invalid toxic type")
    assert_error(http.post(base, json={"type": "latency", "stream": "sideways"}), 400,
                 "stream was invalid, can be either upstream or downstream")
    r = http.post(base, content=b"[")
    assert r.status_code == 400 and json.loads(r.text)["error"].startswith("bad request body")
    r = http.post(base, json={"type": "latency", "attributes": {"latency": "slow"}})
    assert r.status_code == 400 and json.loads(r.text)["error"].startswith("bad request body")
    assert http.post(base, json={"type": "latency"}).status_code == 200
    assert_error(http.post(base, json={"type": "latency"}), 409, "toxic already exists")
    assert_error(http.get(f"{base}/missing"), 404, "toxic not found")
    assert_error(http.post(f"{base}/missing", json={}), 404, "toxic not found")
    assert_error(http.delete(f"{base}/missing"), 404, "toxic not found")
    assert_error(http.get("/proxies/missing/toxics"), 404, "proxy not found")
    assert_error(http.post("/proxies/missing/toxics", json={"type": "latency"}), 404, "proxy not found")


def test_populate(http, echo: Upstream, make_upstream):
    from proxy_helpers import echo_handler

    other = make_upstream(echo_handler)
    first = http.post("/populate", json=[
        {"name": "keep", "listen": "127.0.0.1:0", "upstream": echo.address},
        {"name": "change", "listen": "127.0.0.1:0", "upstream": echo.address},
    ])
    assert first.status_code == 201 and first.headers["content-type"].startswith("application/json")
    listens = {p["name"]: p["listen"] for p in first.json()["proxies"]}
    http.post("/proxies/keep/toxics", json={"type": "latency"})
    http.post("/proxies/change/toxics", json={"type": "latency"})
    second = http.post("/populate", json=[
        {"name": "keep", "listen": listens["keep"], "upstream": echo.address},
        {"name": "change", "listen": listens["change"], "upstream": other.address},
        {"name": "new", "listen": "127.0.0.1:0", "upstream": echo.address, "enabled": False},
    ])
    assert second.status_code == 201
    by_name = {p["name"]: p for p in second.json()["proxies"]}
    assert by_name["change"]["toxics"] == [] and by_name["change"]["upstream"] == other.address
    assert by_name["new"]["enabled"] is False
    # unchanged: kept with its toxics (read back: the real server's answer shows the request, not the proxy)
    assert len(http.get("/proxies/keep/toxics").json()) == 1


def test_populate_keeps_an_unchanged_proxy(http, echo: Upstream):
    """Same name, listen and upstream: the live proxy stays, toxics, connections and all."""
    first = http.post("/populate", json=[{"name": "db", "listen": "127.0.0.1:0", "upstream": echo.address}])
    listen = first.json()["proxies"][0]["listen"]
    toxic = http.post("/proxies/db/toxics", json={"type": "latency", "attributes": {"latency": 1}}).json()
    with connect(ClientProxy("db", listen, echo.address)) as sock:
        assert round_trip(sock) == b"ping"
        again = http.post("/populate", json=[{"name": "db", "listen": listen, "upstream": echo.address}])
        assert again.status_code == 201
        answer = again.json()["proxies"][0]
        assert (answer["name"], answer["listen"], answer["upstream"]) == ("db", listen, echo.address)
        assert round_trip(sock, b"still") == b"still"  # not restarted: the connection lives on
    kept = http.get("/proxies/db").json()
    assert kept["toxics"] == [toxic] and kept["enabled"] is True and kept["listen"] == listen


def test_populate_ignores_enabled_of_an_unchanged_proxy(http, echo: Upstream):
    """Toxiproxy compares listen and upstream only: a proxy that is down stays down, toxics kept."""
    listen = http.post("/proxies", json={"name": "db", "listen": "127.0.0.1:0", "upstream": echo.address}).json()["listen"]
    http.post("/proxies/db/toxics", json={"type": "noop"})
    http.post("/proxies/db", json={"enabled": False})
    r = http.post("/populate", json=[{"name": "db", "listen": listen, "upstream": echo.address, "enabled": True}])
    assert r.status_code == 201
    kept = http.get("/proxies/db").json()
    assert kept["enabled"] is False and [t["name"] for t in kept["toxics"]] == ["noop_downstream"]


@pytest.mark.parametrize("change", ["upstream", "listen", "listen as localhost"])
def test_populate_replaces_a_changed_proxy(http, echo: Upstream, make_upstream, change: str):
    """Listen or upstream differs (as strings, like Go): the old proxy stops, a new one without toxics starts."""
    from proxy_helpers import echo_handler

    other = make_upstream(echo_handler)
    listen = http.post("/proxies", json={"name": "db", "listen": "127.0.0.1:0", "upstream": echo.address}).json()["listen"]
    http.post("/proxies/db/toxics", json={"type": "latency", "attributes": {"latency": 1}})
    port = listen.rsplit(":", 1)[1]
    item = {"name": "db", "listen": listen, "upstream": echo.address}
    item |= {"upstream": {"upstream": other.address},
             "listen": {"listen": "127.0.0.1:0"},
             "listen as localhost": {"listen": f"localhost:{port}"}}[change]
    with connect(ClientProxy("db", listen, echo.address)) as sock:
        assert round_trip(sock) == b"ping"
        r = http.post("/populate", json=[item])
        assert r.status_code == 201, r.text
        assert sock.recv(10) == b""  # the replaced proxy's connection was cut
    now = http.get("/proxies/db").json()
    assert now["toxics"] == [] and now["enabled"] is True and now["upstream"] == item["upstream"]
    assert (now["listen"] == listen) is (change != "listen")  # localhost:P binds 127.0.0.1:P again
    with connect(ClientProxy("db", now["listen"], now["upstream"])) as sock:
        assert round_trip(sock) == b"ping"
    served = other if change == "upstream" else echo
    assert served.accepted == (1 if change == "upstream" else 2)


@pytest.fixture
def port_in_use() -> Iterator[int]:
    """A port some other socket listens on, on 127.0.0.1."""
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        yield blocker.getsockname()[1]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_listen_address_in_use_names_the_resolved_address(http, echo: Upstream, port_in_use: int, host: str):
    """Go's net.Listen error names the address it tried to bind, after resolving the host."""
    message = f"listen tcp 127.0.0.1:{port_in_use}: bind: address already in use"
    body = {"name": "db", "listen": f"{host}:{port_in_use}", "upstream": echo.address}
    assert_error(http.post("/proxies", json=body), 500, message)
    r = http.post("/populate", json=[body])
    assert r.status_code == 500 and r.headers["content-type"] == "application/json"
    assert r.json() == {"error": message, "status": 500, "proxies": None}
    assert http.get("/proxies").json() == {}


def test_populate_validates_everything_first(http, echo: Upstream):
    r = http.post("/populate", json=[
        {"name": "ok", "listen": "127.0.0.1:0", "upstream": echo.address},
        {"name": "bad", "listen": "127.0.0.1:0"},
    ])
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {"error": "missing required field: upstream at proxy 2", "status": 400, "proxies": None}
    assert http.get("/proxies").json() == {}  # nothing was created
    r = http.post("/populate", content=b"{")
    assert r.status_code == 400 and r.json()["proxies"] is None


def test_reset(http, echo_proxy):
    http.post(f"/proxies/{echo_proxy.name}/toxics", json={"type": "latency"})
    http.post(f"/proxies/{echo_proxy.name}", json={"enabled": False})
    r = http.post("/reset")
    assert r.status_code == 204 and r.content == b""
    after = http.get(f"/proxies/{echo_proxy.name}").json()
    assert after["enabled"] is True and after["toxics"] == []
    with connect(echo_proxy) as sock:
        assert round_trip(sock) == b"ping"


def test_metrics(http, echo_proxy):
    with connect(echo_proxy) as sock:
        assert round_trip(sock, b"12345") == b"12345"
    labels = (f'listener="{echo_proxy.listen}",proxy="echo",upstream="{echo_proxy.upstream}"')
    expected = {
        f'toxiproxy_proxy_{kind}_bytes_total{{direction="{direction}",{labels}}} 5'
        for kind in ("received", "sent")
        for direction in ("upstream", "downstream")
    }

    def scrape() -> bool:
        r = http.get("/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        return expected <= set(r.text.splitlines())

    # a counter moves just after its bytes did: poll briefly rather than race the pump thread
    wait_for(scrape, "byte counters of one 5-byte round trip", EFFECT_TIMEOUT, Poll(interval=0.02, tolerate=()))


def test_keep_alive_and_http10(proxy_server: ServerThread, api):
    with socket.create_connection((proxy_server.host, proxy_server.port), timeout=5) as sock:
        sock.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\nGET /version HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    assert data.count(b"HTTP/1.1 200 OK") == 2


def test_changing_listen_restarts_and_drops_connections(http, echo_proxy):
    with connect(echo_proxy) as sock:
        assert round_trip(sock) == b"ping"
        r = http.post(f"/proxies/{echo_proxy.name}", json={"listen": "127.0.0.1:0"})
        assert r.status_code == 200 and r.json()["listen"] != echo_proxy.listen
        assert sock.recv(10) == b""  # the old connection was dropped
    with connect(echo_proxy.refresh()) as sock:
        assert round_trip(sock) == b"ping"


def test_expect_100_continue(proxy_server: ServerThread, api):
    body = b'{"name":"big","listen":"127.0.0.1:0","upstream":"127.0.0.1:9"}'
    with socket.create_connection((proxy_server.host, proxy_server.port), timeout=5) as sock:
        sock.sendall(b"POST /proxies HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body))
        assert sock.recv(4096).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(body)
        assert recv_until_body(sock).startswith(b"HTTP/1.1 201 Created")


def recv_until_body(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    return data


def test_localhost_listen_resolves_to_ipv4(http, echo: Upstream):
    r = http.post("/proxies", json={"name": "lh", "listen": "localhost:0", "upstream": echo.address})
    assert r.status_code == 201 and r.json()["listen"].startswith("127.0.0.1:")
