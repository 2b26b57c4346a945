"""One encoder of the AVideo "encoder cluster": ``python -m refstack.live.encoder``.

It connects to the platform's relay FROM its own source address (``--source-ip 127.0.0.2``;
every 127.0.0.x is loopback), asks for a stream and records what it receives, one file per
connection: ``<data-dir>/encoders/<ip>/<stream>/session_<ms>_<pid>.ts`` (written and flushed
as it arrives, so a SIGKILL loses nothing already received).

When its connection is refused (403: IP blocklisted) or cut, it reconnects by itself with a
short capped backoff, so recording resumes as soon as the admin allowlists it (runbook
remedy). SIGTERM/SIGINT stop it cleanly.

Options may come from the environment: ENCODER_SOURCE_IP, LIVE_RELAY (host:port),
LIVE_STREAM, LIVE_DATA_DIR.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from refstack import broken
from refstack.broken import is_broken

RECV = 64 * 1024
CONNECT_TIMEOUT_S = 3.0
#: An idle relay (no live stream) is re-asked this often; harmless, and it notices a dead peer.
IDLE_TIMEOUT_S = 15.0


class Refused(Exception):
    pass


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} encoder: {msg}", file=sys.stderr, flush=True)


def read_status(sock: socket.socket) -> tuple[int, bytes]:
    """Read the relay's HTTP head; return (status, body bytes already read past it)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(4096)
        if not data:
            raise ConnectionError("relay closed before answering")
        buf += data
        if len(buf) > 16384:
            raise ConnectionError("relay answer head too long")
    head, rest = buf.split(b"\r\n\r\n", 1)
    status = int(head.split(b"\r\n", 1)[0].split(b" ")[1])
    return status, rest


def session(args: argparse.Namespace, stop: threading.Event) -> int:
    """One connection; returns bytes recorded. Raises on refusal or connection errors."""
    host, port = args.relay.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), CONNECT_TIMEOUT_S, source_address=(args.source_ip, 0))
    try:
        sock.sendall(
            f"GET /relay/{args.stream} HTTP/1.1\r\nHost: {args.relay}\r\nUser-Agent: refstack-encoder\r\n\r\n".encode()
        )
        sock.settimeout(IDLE_TIMEOUT_S)
        status, data = read_status(sock)
        if status != 200:
            raise Refused(f"relay answered {status}: {data[:200].decode('latin-1').strip()}")
        log(f"connected from {args.source_ip} to {args.relay}, stream {args.stream!r}")
        out_dir = Path(args.data_dir) / "encoders" / args.source_ip / args.stream
        f = None
        recorded = 0
        try:
            while not stop.is_set():
                if data:
                    if f is None:  # a file only once data flows: no empty sessions
                        out_dir.mkdir(parents=True, exist_ok=True)
                        name = f"session_{int(time.time() * 1000)}_{os.getpid()}.ts"
                        f = open(out_dir / name, "ab")  # noqa: SIM115 - closed below
                        log(f"recording to {out_dir / name}")
                    f.write(data)
                    f.flush()
                    recorded += len(data)
                try:
                    data = sock.recv(RECV)
                except socket.timeout:
                    if f is None:
                        return 0  # idle: ask again
                    raise
                if not data:
                    break
        finally:
            if f is not None:
                f.close()
        return recorded
    finally:
        sock.close()


def run(args: argparse.Namespace, stop: threading.Event) -> int:
    rng = random.Random()
    delay = args.retry_min
    connected_once = False
    while not stop.is_set():
        try:
            got = session(args, stop)
            connected_once = True
            log(f"session ended after {got} bytes")
            delay = args.retry_min
        except Refused as exc:
            log(f"refused: {exc}")
        except OSError as exc:
            log(f"connection lost or failed: {type(exc).__name__}: {exc}")
            connected_once = connected_once or isinstance(exc, ConnectionResetError)
        if connected_once and is_broken("live_no_reconnect"):
            log("giving up (live_no_reconnect)")  # BUG: one cut and the recording is over
            return 3
        # Capped exponential backoff with jitter: reconnect within ~retry_max of the remedy.
        stop.wait(delay / 2 + rng.uniform(0, delay / 2))
        delay = min(args.retry_max, delay * 2)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m refstack.live.encoder", description=__doc__.split("\n")[0])
    p.add_argument("--source-ip", default=os.environ.get("ENCODER_SOURCE_IP", "127.0.0.2"),
                   help="local address to connect from (the encoder's identity on the blocklist)")
    p.add_argument("--relay", default=os.environ.get("LIVE_RELAY", ""), help="relay host:port (LIVE_RELAY_PORT)")
    p.add_argument("--stream", default=os.environ.get("LIVE_STREAM", "live"))
    p.add_argument("--data-dir", default=os.environ.get("LIVE_DATA_DIR", ""),
                   help="the platform's LIVE_DATA_DIR (recordings are shared through it)")
    p.add_argument("--retry-min", type=float, default=0.2, help="first reconnect delay, s")
    p.add_argument("--retry-max", type=float, default=1.0, help="reconnect delay cap, s")
    args = p.parse_args(argv)
    if not args.relay or not args.data_dir:
        p.error("--relay and --data-dir (or LIVE_RELAY and LIVE_DATA_DIR) are required")
    return args


def main(argv: list[str] | None = None) -> int:
    broken.active()
    args = parse_args(argv)
    stop = threading.Event()

    def terminate(*_: object) -> None:
        stop.set()
        raise SystemExit(0)  # interrupts a blocking recv; the session file is closed in finally

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, terminate)
    return run(args, stop)


if __name__ == "__main__":
    sys.exit(main())
