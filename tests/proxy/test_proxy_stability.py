"""Stability: many concurrent connections, toxics churned under traffic, nothing leaked."""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time

from proxy_helpers import EFFECT_TIMEOUT, connect, open_fds, recv_exact, round_trip, wait_idle
from renderchaos_proxy.client import ToxiproxyClient
from renderchaos_proxy.server import ServerThread

CONCURRENT = 500
CHURN_ROUNDS = 150
#: An API call slower than this under load counts as hung.
API_CALL_BUDGET = 1.0


def server_tasks(server: ServerThread) -> int:
    async def count() -> int:
        return len(asyncio.all_tasks())

    return asyncio.run_coroutine_threadsafe(count(), server.loop).result(5)


def test_500_concurrent_connections(proxy_server: ServerThread, echo_proxy):
    fds, tasks = open_fds(), server_tasks(proxy_server)
    socks = [connect(echo_proxy) for _ in range(CONCURRENT)]
    try:
        for i, sock in enumerate(socks):
            sock.sendall(b"%08d" % i)
        for i, sock in enumerate(socks):
            assert recv_exact(sock, 8) == b"%08d" % i
        # a toxic reaches every live connection at once
        with echo_proxy.toxic("latency", latency=50):
            start = time.perf_counter()
            for sock in socks:
                sock.sendall(b"x")
            for sock in socks:
                assert recv_exact(sock, 1) == b"x"
            assert time.perf_counter() - start >= 0.05
    finally:
        for sock in socks:
            sock.close()
    wait_idle(proxy_server, fds)
    assert server_tasks(proxy_server) == tasks


def test_toxic_churn_under_traffic(proxy_server: ServerThread, echo_proxy):
    fds, tasks = open_fds(), server_tasks(proxy_server)
    stop = threading.Event()
    errors: list[BaseException] = []
    done = [0]

    def traffic(seed: int) -> None:
        rng = random.Random(seed)
        try:
            with connect(echo_proxy, timeout=EFFECT_TIMEOUT) as sock:
                while not stop.is_set():
                    payload = os.urandom(rng.randint(1, 40_000))
                    sock.sendall(payload)
                    assert recv_exact(sock, len(payload)) == payload  # no byte lost, duplicated or reordered
                    done[0] += 1
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    workers = [threading.Thread(target=traffic, args=(i,), name=f"traffic-{i}") for i in range(6)]
    for w in workers:
        w.start()
    rng = random.Random(7)
    slowest = 0.0
    try:
        for i in range(CHURN_ROUNDS):
            stream = rng.choice(["upstream", "downstream"])
            kind, attrs = rng.choice([
                ("latency", {"latency": rng.randint(0, 5), "jitter": 1}),
                ("bandwidth", {"rate": 50_000}),
                ("slicer", {"average_size": 2048, "size_variation": 1024, "delay": 50}),
                ("noop", {}),
            ])
            start = time.perf_counter()
            toxic = echo_proxy.add_toxic(kind, stream=stream, toxicity=rng.choice([0.0, 0.5, 1.0]), **attrs)
            if i % 3 == 0:
                echo_proxy.update_toxic(toxic.name, toxicity=rng.random())
            echo_proxy.remove_toxic(toxic.name)
            slowest = max(slowest, time.perf_counter() - start)
            assert not errors, errors
    finally:
        stop.set()
        for w in workers:
            w.join(EFFECT_TIMEOUT)
    assert not errors, errors
    assert not any(w.is_alive() for w in workers), "a traffic thread hung"
    assert slowest < API_CALL_BUDGET, f"slowest add/update/remove took {slowest:.3f}s"
    assert done[0] > CHURN_ROUNDS  # traffic really flowed during the churn
    with connect(echo_proxy) as sock:
        assert round_trip(sock) == b"ping"
    wait_idle(proxy_server, fds)
    assert server_tasks(proxy_server) == tasks


def test_bulk_switches_paths_mid_stream(echo_proxy):
    """A toxic added and removed during a bulk transfer neither corrupts nor stalls it."""
    payload = os.urandom(8 << 20)
    received = bytearray()
    with connect(echo_proxy, timeout=EFFECT_TIMEOUT) as sock:
        reader = threading.Thread(target=lambda: received.extend(recv_exact(sock, len(payload))))
        reader.start()
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        sender.start()
        for _ in range(10):
            with echo_proxy.toxic("slicer", average_size=4096, size_variation=100, delay=0):
                pass
            with echo_proxy.toxic("latency", stream="upstream", latency=1):
                pass
        sender.join(EFFECT_TIMEOUT)
        reader.join(EFFECT_TIMEOUT)
    assert bytes(received) == payload


def test_deleting_proxy_with_live_connections_is_prompt(proxy_server: ServerThread, api: ToxiproxyClient, echo):
    api.version()  # opens the client's keep-alive API connection before counting fds
    fds = open_fds()
    proxy = api.create_proxy("gone", upstream=echo.address)
    socks = [connect(proxy) for _ in range(20)]
    proxy.add_toxic("bandwidth", rate=0)
    for sock in socks:
        sock.sendall(b"stalled")
    start = time.perf_counter()
    proxy.delete()
    assert time.perf_counter() - start < API_CALL_BUDGET
    for sock in socks:
        assert sock.recv(10) == b""
        sock.close()
    wait_idle(proxy_server, fds)
