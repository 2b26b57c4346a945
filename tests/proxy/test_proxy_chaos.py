"""Every toxic type, closers included, churned under traffic: nothing hangs, nothing leaks."""

from __future__ import annotations

import os
import random
import socket
import threading
import time

from proxy_helpers import EFFECT_TIMEOUT, connect, open_fds, proxy_threads, wait_idle
from renderchaos_proxy.server import ServerThread

ROUNDS = 120
API_CALL_BUDGET = 1.0


def test_all_toxics_churned_under_reconnecting_traffic(proxy_server: ServerThread, echo_proxy):
    fds = open_fds()
    stop = threading.Event()
    unexpected: list[BaseException] = []
    exchanges = [0]

    def traffic(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            try:
                with connect(echo_proxy, timeout=0.5) as sock:
                    for _ in range(rng.randint(1, 20)):
                        payload = os.urandom(rng.randint(1, 20_000))
                        sock.sendall(payload)
                        got = b""
                        while len(got) < len(payload):
                            chunk = sock.recv(65536)
                            if not chunk:
                                break
                            got += chunk
                        if not chunk:
                            break
                        assert got == payload, "echo corrupted"  # closers may cut, never corrupt
                        exchanges[0] += 1
            except (OSError, socket.timeout):
                continue  # cut, reset, refused (down) or silenced: expected under these faults
            except BaseException as exc:
                unexpected.append(exc)
                return

    workers = [threading.Thread(target=traffic, args=(i,), name=f"chaos-{i}") for i in range(5)]
    for w in workers:
        w.start()
    rng = random.Random(11)
    slowest = 0.0
    try:
        for _ in range(ROUNDS):
            kind, attrs = rng.choice([
                ("latency", {"latency": rng.randint(0, 20), "jitter": 5}),
                ("bandwidth", {"rate": rng.choice([0, 100, 10_000])}),
                ("slow_close", {"delay": 10}),
                ("timeout", {"timeout": rng.choice([0, 20])}),
                ("reset_peer", {"timeout": rng.choice([0, 10])}),
                ("slicer", {"average_size": 100, "size_variation": 50, "delay": 100}),
                ("limit_data", {"bytes": rng.randint(0, 50_000)}),
            ])
            start = time.perf_counter()
            toxic = echo_proxy.add_toxic(kind, stream=rng.choice(["upstream", "downstream"]),
                                         toxicity=rng.choice([0.3, 1.0]), **attrs)
            if rng.random() < 0.1:
                echo_proxy.disable()
                echo_proxy.enable()
            echo_proxy.remove_toxic(toxic.name)
            slowest = max(slowest, time.perf_counter() - start)
    finally:
        stop.set()
        for w in workers:
            w.join(EFFECT_TIMEOUT)
    assert not unexpected, unexpected
    assert not any(w.is_alive() for w in workers), "a traffic thread hung"
    assert slowest < API_CALL_BUDGET, f"slowest API sequence {slowest:.3f}s"
    assert exchanges[0] > 0
    wait_idle(proxy_server, fds)
    assert proxy_threads() == 0
