"""Benchmark the fault proxy against a direct loopback connection, side by side.

    python benchmarks/proxy.py [--gib 1] [--repeat 5] [--round-trips 5000]

Starts ``renderchaos_proxy`` as a subprocess (its own interpreter, as in use),
a sink and an echo server in this process, then measures, alternating direct
and proxied runs so both see the same machine state:

* bulk throughput: ``--gib`` GiB pushed through one connection into a sink,
  ``--repeat`` times, median MB/s (1 MB = 10^6 B);
* small request/response latency: ``--round-trips`` 64-byte echoes on one
  connection; added latency = proxied percentile minus direct percentile.

The last four lines are machine-readable:
``proxy_throughput_MBps``, ``direct_throughput_MBps``, ``proxy_added_p50_ms``,
``proxy_added_p99_ms``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from renderchaos.wait import Poll, wait_for  # noqa: E402

SEND_BLOCK = 1 << 20
API_READY_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    """Listens on an ephemeral 127.0.0.1 port; each connection is handled by ``handle`` in a thread."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    @staticmethod
    def handle(conn: socket.socket) -> None:
        raise NotImplementedError


class Sink(_Server):
    """Accepts connections and counts bytes until EOF; reports each total."""

    @staticmethod
    def handle(conn: socket.socket) -> None:
        buf = bytearray(SEND_BLOCK)
        total = 0
        with conn:
            while True:
                n = conn.recv_into(buf)
                if not n:
                    break
                total += n
            conn.sendall(str(total).encode())


class Echo(_Server):
    """Echoes every byte back."""

    @staticmethod
    def handle(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                conn.sendall(data)


def bulk(port: int, total: int) -> float:
    """Send ``total`` bytes to the sink on ``port``; return MB/s (until the sink saw them all)."""
    block = b"\x5a" * SEND_BLOCK
    with socket.create_connection(("127.0.0.1", port)) as s:
        start = time.perf_counter()
        sent = 0
        while sent < total:
            s.sendall(block)
            sent += len(block)
        s.shutdown(socket.SHUT_WR)
        reply = b""
        while True:
            chunk = s.recv(64)
            if not chunk:
                break
            reply += chunk
        elapsed = time.perf_counter() - start
    if int(reply or 0) != sent:
        raise SystemExit(f"bulk: sink counted {reply!r} bytes, sent {sent}")
    return sent / elapsed / 1e6


def round_trips(port: int, n: int, size: int = 64) -> list[float]:
    msg = b"r" * size
    out = []
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(200):  # warm up
            s.sendall(msg)
            got = 0
            while got < size:
                got += len(s.recv(size - got))
        for _ in range(n):
            t0 = time.perf_counter()
            s.sendall(msg)
            got = 0
            while got < size:
                got += len(s.recv(size - got))
            out.append(time.perf_counter() - t0)
    return out


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def api(url: str, method: str = "GET", body: dict | None = None) -> dict:
    req = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode())
    with urllib.request.urlopen(req, timeout=5) as resp:
        raw = resp.read()
        return json.loads(raw) if raw else {}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gib", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--round-trips", type=int, default=5000)
    args = ap.parse_args()

    api_port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "renderchaos_proxy.server", "-host", "127.0.0.1", "-port", str(api_port)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{api_port}"
        wait_for(lambda: api(base + "/version"), "proxy API up", API_READY_TIMEOUT, Poll(interval=0.05))
        sink, echo = Sink(), Echo()
        p_sink = api(base + "/proxies", "POST", {"name": "sink", "listen": "127.0.0.1:0", "upstream": f"127.0.0.1:{sink.port}"})
        p_echo = api(base + "/proxies", "POST", {"name": "echo", "listen": "127.0.0.1:0", "upstream": f"127.0.0.1:{echo.port}"})
        sink_proxy = int(p_sink["listen"].rsplit(":", 1)[1])
        echo_proxy = int(p_echo["listen"].rsplit(":", 1)[1])

        total = int(args.gib * (1 << 30))
        direct_tp, proxy_tp = [], []
        for i in range(args.repeat):
            direct_tp.append(bulk(sink.port, total))
            proxy_tp.append(bulk(sink_proxy, total))
            print(f"bulk run {i + 1}: direct {direct_tp[-1]:.0f} MB/s, proxy {proxy_tp[-1]:.0f} MB/s", flush=True)

        direct_rt, proxy_rt = [], []
        chunk = max(1, args.round_trips // 5)
        for _ in range(5):  # interleave so drift hits both alike
            direct_rt += round_trips(echo.port, chunk)
            proxy_rt += round_trips(echo_proxy, chunk)
        d50, d99 = pct(direct_rt, 50) * 1e3, pct(direct_rt, 99) * 1e3
        p50, p99 = pct(proxy_rt, 50) * 1e3, pct(proxy_rt, 99) * 1e3
        print(f"round trip direct p50 {d50:.4f} ms p99 {d99:.4f} ms; proxy p50 {p50:.4f} ms p99 {p99:.4f} ms")
        print(f"proxy_throughput_MBps={statistics.median(proxy_tp):.0f}")
        print(f"direct_throughput_MBps={statistics.median(direct_tp):.0f}")
        print(f"proxy_added_p50_ms={p50 - d50:.4f}")
        print(f"proxy_added_p99_ms={p99 - d99:.4f}")
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
