"""Fixtures for the fault-proxy suite: an in-process server, loopback upstreams, a client.

Everything binds 127.0.0.1 port 0 and is torn down by its fixture. Helpers that
tests import live in ``proxy_helpers`` (a unique name: no tests/__init__.py).
"""

from __future__ import annotations

from typing import Callable, Iterator

import pytest

from proxy_helpers import Handler, Upstream, echo_handler
from renderchaos_proxy.client import Proxy, ToxiproxyClient
from renderchaos_proxy.server import ServerThread


@pytest.fixture(scope="session")
def proxy_server() -> Iterator[ServerThread]:
    with ServerThread(seed=1234) as server:
        yield server


@pytest.fixture
def api(proxy_server: ServerThread) -> Iterator[ToxiproxyClient]:
    """A client on a clean server; every proxy is deleted afterwards."""
    with ToxiproxyClient(proxy_server.url) as client:
        yield client
        for proxy in client.proxies().values():
            proxy.delete()


@pytest.fixture
def echo() -> Iterator[Upstream]:
    upstream = Upstream(echo_handler).start()
    yield upstream
    upstream.stop()


@pytest.fixture
def echo_proxy(api: ToxiproxyClient, echo: Upstream) -> Proxy:
    return api.create_proxy("echo", listen="127.0.0.1:0", upstream=echo.address)


@pytest.fixture
def make_upstream() -> Iterator[Callable[[Handler], Upstream]]:
    started: list[Upstream] = []

    def make(handler: Handler) -> Upstream:
        upstream = Upstream(handler).start()
        started.append(upstream)
        return upstream

    yield make
    for upstream in started:
        upstream.stop()


