"""Helpers for the fault-proxy suite: loopback upstreams, socket helpers, leak counters."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from typing import Awaitable, Callable

from renderchaos.wait import Poll, wait_for
from renderchaos_proxy.client import Proxy
from renderchaos_proxy.server import ServerThread

#: How long a fault may take to show on the wire (s). Generous: CI machines are slow.
EFFECT_TIMEOUT = 5.0
#: Socket timeout for test clients (s): a read that hangs longer is a failure.
CLIENT_TIMEOUT = 5.0

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def echo_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


def blast_handler(size: int) -> Handler:
    """Send ``size`` bytes as soon as the client connects, then close."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"x" * size)
        await writer.drain()

    return handler


async def sink_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Count bytes until EOF, then answer the count."""
    total = 0
    while data := await reader.read(65536):
        total += len(data)
    writer.write(str(total).encode())
    await writer.drain()


class Upstream:
    """An asyncio TCP server on its own loop thread, used as a proxy's upstream."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-upstream", daemon=True)
        self._tasks: set[asyncio.Task] = set()
        self.accepted = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        self.accepted += 1
        try:
            await self._handler(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    def start(self) -> "Upstream":
        self._thread.start()

        async def start() -> asyncio.AbstractServer:
            return await asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=1024)

        self.server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(5)
        self.port = self.server.sockets[0].getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        return self

    def stop(self) -> None:
        async def stop() -> None:
            self.server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await asyncio.sleep(0)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


def connect(proxy: Proxy, timeout: float = CLIENT_TIMEOUT) -> socket.socket:
    sock = socket.create_connection((proxy.listen_host, proxy.listen_port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"EOF after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def recv_all(sock: socket.socket) -> bytes:
    buf = bytearray()
    while chunk := sock.recv(65536):
        buf += chunk
    return bytes(buf)


def round_trip(sock: socket.socket, payload: bytes = b"ping") -> bytes:
    sock.sendall(payload)
    return recv_exact(sock, len(payload))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def proxy_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("proxy-"))


def wait_idle(server: ServerThread, fds: int, timeout: float = EFFECT_TIMEOUT) -> None:
    """Wait until no proxy thread is left and the fd count is back to ``fds``."""
    wait_for(lambda: proxy_threads() == 0, "every proxy connection thread to exit", timeout, Poll(interval=0.02))
    wait_for(lambda: open_fds() <= fds, f"open fds back to {fds} (now {open_fds()})", timeout, Poll(interval=0.02))
