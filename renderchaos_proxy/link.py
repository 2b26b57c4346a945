"""One proxied TCP connection: two directions, each pumped by its own thread.

A direction has two modes and switches between them while bytes flow:

* **fast path** (no active toxic): ``os.splice`` socket -> pipe -> socket, zero copy,
  the thread waiting in ``poll`` on the source socket and its control eventfd;
* **toxic path** (at least one active toxic): ``recv`` chunks (32 KiB, as Toxiproxy)
  and run each through the chain of active toxics in the order they were added.

The API thread never blocks on a connection: it changes a direction's chain,
bumps its ``version`` and writes its eventfd. Every wait inside a direction
(``poll`` for data, for buffer space, or for a toxic's timer) also watches that
eventfd, so a change takes effect at once: the direction re-reads its chain and
carries the bytes it still holds over to the new mode.
"""

from __future__ import annotations

import fcntl
import itertools
import logging
import math
import os
import random
import select
import socket
import struct
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from renderchaos_proxy.toxics import Toxic

if TYPE_CHECKING:  # pragma: no cover
    from renderchaos_proxy.proxy import Proxy

CHUNK = 32 * 1024  # toxic-path read size, like Toxiproxy's io buffer
SPLICE_LEN = 1 << 20
PIPE_SIZE = 1 << 20
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
CONNECT_TIMEOUT = 10.0
#: Bytes a latency toxic may hold in flight per direction before the sender feels backpressure.
READ_AHEAD_LIMIT = 8 << 20
SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
POLLIN = select.POLLIN
POLLOUT = select.POLLOUT
_ids = itertools.count(1)
log = logging.getLogger("renderchaos_proxy")


class _Closed(Exception):
    """The connection was cut while this direction was waiting."""


class _Interrupted(Exception):
    """The chain changed while a chunk was in flight; ``data`` was not yet delivered."""

    def __init__(self, data: bytes, ts: float) -> None:
        self.data = data
        self.ts = ts


class Direction:
    """One way of a connection (``upstream`` = client to server, ``downstream`` = back)."""

    def __init__(self, conn: "Connection", name: str, rng: random.Random) -> None:
        self.conn = conn
        self.name = name
        self.rng = rng
        self.ctl = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.active: dict[str, Toxic] = {}  # toxic name -> toxic whose roll passed
        self.state: dict[str, dict] = {}  # toxic name -> per-connection toxic state
        self.chain: tuple[Toxic, ...] = ()
        self.version = 0
        self.received = 0
        self.sent = 0
        self.inbox: deque[tuple[bytes, float]] = deque()  # read, not yet passed on
        self.inbox_bytes = 0
        self.src_eof = False
        self.read_ahead = False
        self.pipe: tuple[int, int] | None = None
        self.src: socket.socket | None = None
        self.dst: socket.socket | None = None
        self.mode = "fast"
        self._run_version = 0

    # -- called from the API thread ------------------------------------------------
    def set_toxic(self, toxic: Toxic, order: list[str]) -> None:
        """Roll ``toxic`` for this direction (once, now) and rebuild the chain."""
        roll = toxic.toxicity > 0 and self.rng.random() < toxic.toxicity
        state = self.state.setdefault(toxic.name, {})
        state["start"] = time.monotonic()
        if roll:
            self.active[toxic.name] = toxic
        else:
            self.active.pop(toxic.name, None)
        self._rebuild(order)

    def remove_toxic(self, name: str, order: list[str]) -> bool:
        """Drop a toxic; return whether it was active here."""
        was = self.active.pop(name, None) is not None
        self.state.pop(name, None)
        self._rebuild(order)
        return was

    def _rebuild(self, order: list[str]) -> None:
        self.chain = tuple(self.active[n] for n in order if n in self.active)
        self.version += 1
        self.notify()

    def notify(self) -> None:
        with self.conn._lock:  # never write to an eventfd number that was closed and reused
            if self.conn.fds_closed:
                return
            try:
                os.eventfd_write(self.ctl, 1)
            except OSError:
                pass

    # -- the pumping thread --------------------------------------------------------
    def run(self) -> None:
        conn = self.conn
        try:
            while not conn.closed:
                if self.chain:
                    self.mode = "toxic"
                    done = self._toxic_loop()
                else:
                    self.mode = "fast"
                    done = self._fast_loop()
                if done:
                    break
        except _Closed:
            pass
        except OSError:
            conn.cut()
        except Exception:  # a bug must not leave half a connection behind
            log.exception("proxy %s: %s direction failed", conn.proxy.name, self.name)
            conn.cut()
        finally:
            conn.direction_done(self)

    def _drain_ctl(self) -> None:
        try:
            os.eventfd_read(self.ctl)
        except BlockingIOError:
            pass

    def _eof(self, delay: float = 0.0) -> bool:
        """Source closed: pass the close on (after ``delay`` s for slow_close)."""
        if delay > 0:
            self._sleep_until(time.monotonic() + delay, interruptible=False)
        try:
            self.dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        return True

    def _write_all(self, data) -> None:
        view = memoryview(data)
        dst = self.dst
        poller = None
        while view:
            try:
                n = dst.send(view)
            except BlockingIOError:
                if poller is None:
                    poller = select.poll()
                    poller.register(dst.fileno(), POLLOUT)
                    poller.register(self.ctl, POLLIN)
                for fd, _ in poller.poll():
                    if fd == self.ctl:
                        self._drain_ctl()
                        if self.conn.closed:
                            raise _Closed()
                continue
            self.sent += n
            view = view[n:]

    def _fast_loop(self) -> bool:
        while self.inbox:  # bytes the toxic path had read but not yet passed on
            data, _ = self.inbox.popleft()
            self.inbox_bytes -= len(data)
            self._write_all(data)
        if self.src_eof:
            return self._eof()
        if self.pipe is None:
            r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                fcntl.fcntl(w, F_SETPIPE_SZ, PIPE_SIZE)
            except OSError:
                pass
            self.pipe = (r, w)
        pr, pw = self.pipe
        src = self.src.fileno()
        dst = self.dst.fileno()
        ctl = self.ctl
        conn = self.conn
        wait_in = select.poll()
        wait_in.register(src, POLLIN)
        wait_in.register(ctl, POLLIN)
        wait_out = select.poll()
        wait_out.register(dst, POLLOUT)
        wait_out.register(ctl, POLLIN)
        splice = os.splice
        flags = SPLICE_FLAGS
        while True:
            if self.chain:  # checked before every read: a toxic added a moment ago applies to it
                return False
            try:
                n = splice(src, pw, SPLICE_LEN, None, None, flags)
            except BlockingIOError:
                for fd, _ in wait_in.poll():
                    if fd == ctl:
                        self._drain_ctl()
                        if conn.closed:
                            return True
                        if self.chain:
                            return False  # switch to the toxic path
                continue
            if n == 0:
                return self._eof()
            self.received += n
            while n:
                try:
                    m = splice(pr, dst, n, None, None, flags)
                except BlockingIOError:
                    for fd, _ in wait_out.poll():
                        if fd == ctl:
                            self._drain_ctl()
                            if conn.closed:
                                return True
                    continue
                n -= m
                self.sent += m

    def _read_chunk(self) -> bool:
        """Read one chunk from the source into the inbox (timestamped). False if none was ready."""
        try:
            data = self.src.recv(CHUNK)
        except (BlockingIOError, InterruptedError):
            return False
        if not data:
            self.src_eof = True
        else:
            self.received += len(data)
            self.inbox.append((data, time.monotonic()))
            self.inbox_bytes += len(data)
        return True

    def _sleep_until(self, deadline: float, interruptible: bool = True) -> None:
        """Wait until ``deadline`` (monotonic). Raises _Interrupted (chain changed) or
        _Closed (connection cut). With ``read_ahead`` on, bytes arriving meanwhile are
        read into the inbox with their arrival time, so a latency toxic delays a stream
        by its latency instead of throttling it to one chunk per delay."""
        poller = select.poll()
        poller.register(self.ctl, POLLIN)
        src = self.src.fileno()
        reading = False
        while True:
            if self.conn.closed:
                raise _Closed()
            if interruptible and self.version != self._run_version:
                raise _Interrupted(b"", 0.0)
            want = self.read_ahead and not self.src_eof and self.inbox_bytes < READ_AHEAD_LIMIT
            if want != reading:
                if want:
                    poller.register(src, POLLIN)
                else:
                    poller.unregister(src)
                reading = want
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if remaining < 0.002 and not reading:
                time.sleep(remaining)  # sub-millisecond precision for slicer delays
                return
            timeout = None if math.isinf(remaining) else remaining * 1000.0
            for fd, _ in poller.poll(timeout):
                if fd == self.ctl:
                    self._drain_ctl()
                else:
                    self._read_chunk()

    def _toxic_loop(self) -> bool:
        version = self._run_version = self.version  # read the version before the chain
        chain = self.chain
        conn = self.conn
        self.read_ahead = any(t.type == "latency" for t in chain)
        poller = select.poll()
        poller.register(self.src.fileno(), POLLIN)
        poller.register(self.ctl, POLLIN)
        while True:
            if conn.closed:
                return True
            if self.version != version:
                return False
            if not self.inbox:
                if self.src_eof:
                    delay = sum(t.attributes.get("delay", 0) for t in chain if t.type == "slow_close")
                    return self._eof(delay / 1000.0)
                # limit_data already exhausted? timeout toxic expired?
                deadline = math.inf
                for toxic in chain:
                    if toxic.type == "timeout" and toxic.attributes.get("timeout", 0) > 0:
                        start = self.state.get(toxic.name, {}).get("start", time.monotonic())
                        deadline = min(deadline, start + toxic.attributes["timeout"] / 1000.0)
                    elif toxic.type == "limit_data":
                        st = self.state.setdefault(toxic.name, {})
                        if toxic.attributes.get("bytes", 0) - st.get("count", 0) <= 0:
                            conn.cut()
                            return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    conn.cut()
                    return True
                events = poller.poll(None if math.isinf(remaining) else remaining * 1000.0)
                readable = False
                for fd, _ in events:
                    if fd == self.ctl:
                        self._drain_ctl()
                    else:
                        readable = True
                if readable and self.version == version:  # never read with a stale chain
                    self._read_chunk()
                continue
            data, ts = self.inbox.popleft()
            self.inbox_bytes -= len(data)
            try:
                self._run_chain(chain, 0, data, ts)
            except _Interrupted as exc:
                if exc.data:
                    self.inbox.appendleft((exc.data, exc.ts))
                    self.inbox_bytes += len(exc.data)
            if conn.closed:
                return True

    def _run_chain(self, chain: tuple[Toxic, ...], i: int, data: bytes, ts: float) -> None:
        """Push one chunk through toxics ``chain[i:]``; raise _Interrupted with what is left."""
        if not data:
            return
        if i == len(chain):
            self._write_all(data)
            return
        toxic = chain[i]
        kind = toxic.type
        attrs = toxic.attributes
        try:
            if kind == "latency":
                delay = attrs.get("latency", 0) / 1000.0
                jitter = attrs.get("jitter", 0) / 1000.0
                if jitter > 0:
                    delay += self.rng.uniform(-jitter, jitter)
                self._sleep_until(ts + delay)
                self._run_chain(chain, i + 1, data, ts + delay)
            elif kind == "bandwidth":
                rate = attrs.get("rate", 0)  # KB/s
                if rate <= 0:
                    self._sleep_until(math.inf)  # stall until the toxic changes
                    return
                st = self.state.setdefault(toxic.name, {})
                piece = rate * 100  # bytes per 100 ms slice
                offset = 0
                while offset < len(data):
                    part = data[offset : offset + piece]
                    release = max(time.monotonic(), st.get("next", 0.0)) + len(part) / (rate * 1000.0)
                    try:
                        self._sleep_until(release)
                    except _Interrupted:
                        raise _Interrupted(data[offset:], ts)
                    st["next"] = release
                    offset += len(part)
                    try:
                        self._run_chain(chain, i + 1, part, ts)
                    except _Interrupted as exc:
                        raise _Interrupted(exc.data + data[offset:], ts)
            elif kind == "slicer":
                average = attrs.get("average_size", 0)
                variation = attrs.get("size_variation", 0)
                delay = attrs.get("delay", 0) / 1_000_000.0
                if average <= 0:
                    self._run_chain(chain, i + 1, data, ts)
                    return
                offset = 0
                while offset < len(data):
                    size = average
                    if 0 < variation < average:
                        size += self.rng.randint(-variation, variation)
                    size = max(1, size)
                    part = data[offset : offset + size]
                    offset += len(part)
                    try:
                        self._run_chain(chain, i + 1, part, ts)
                    except _Interrupted as exc:
                        raise _Interrupted(exc.data + data[offset:], ts)
                    if offset < len(data) and delay > 0:
                        try:
                            self._sleep_until(time.monotonic() + delay)
                        except _Interrupted:
                            raise _Interrupted(data[offset:], ts)
            elif kind == "limit_data":
                st = self.state.setdefault(toxic.name, {})
                left = attrs.get("bytes", 0) - st.get("count", 0)
                part = data[: max(0, left)]
                st["count"] = st.get("count", 0) + len(part)
                try:
                    self._run_chain(chain, i + 1, part, ts)
                finally:
                    if st["count"] >= attrs.get("bytes", 0):
                        self.conn.cut()
            elif kind == "timeout":
                return  # dropped; the toxic loop closes at the deadline (never if 0)
            elif kind == "reset_peer":
                self._sleep_until(time.monotonic() + attrs.get("timeout", 0) / 1000.0)
                self.conn.cut(reset=True)
            else:  # noop, slow_close (acts at EOF)
                self._run_chain(chain, i + 1, data, ts)
        except _Interrupted as exc:
            if not exc.data and exc.ts == 0.0:
                raise _Interrupted(data, ts)  # interrupted before anything was passed on
            raise


class Connection:
    """A client connection and its upstream connection."""

    def __init__(self, proxy: "Proxy", client: socket.socket, rng: random.Random) -> None:
        self.id = next(_ids)
        self.proxy = proxy
        self.client = client
        self.server: socket.socket | None = None
        self.closed = False
        self.fds_closed = False
        self.reset = False
        self._lock = threading.Lock()
        self._running = 2
        self.up = Direction(self, "upstream", random.Random(rng.random()))
        self.down = Direction(self, "downstream", random.Random(rng.random()))

    def direction(self, stream: str) -> Direction:
        return self.up if stream == "upstream" else self.down

    def start(self) -> None:
        threading.Thread(target=self._connect_and_run, name=f"proxy-{self.id}-up", daemon=True).start()

    def _connect_and_run(self) -> None:
        try:
            self.server = socket.create_connection(self.proxy.upstream_address(), timeout=CONNECT_TIMEOUT)
        except OSError:
            self.closed = True
            self._running = 0
            self._close_fds()
            return
        for sock in (self.client, self.server):
            sock.setblocking(False)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self.up.src, self.up.dst = self.client, self.server
        self.down.src, self.down.dst = self.server, self.client
        if self.closed:  # cut while connecting
            self._running = 0
            self._close_fds()
            return
        threading.Thread(target=self.down.run, name=f"proxy-{self.id}-down", daemon=True).start()
        self.up.run()

    def cut(self, reset: bool = False) -> None:
        """Close both sides. ``reset`` sends a TCP RST (SO_LINGER 0) instead of a FIN."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self.reset = reset
        for sock in (self.client, self.server):
            if sock is None:
                continue
            try:
                if reset:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                else:
                    sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.up.notify()
        self.down.notify()

    def direction_done(self, direction: Direction) -> None:
        with self._lock:
            self._running -= 1
            last = self._running == 0
        if last:
            self._close_fds()

    def _close_fds(self) -> None:
        with self._lock:
            self.closed = True
            self.fds_closed = True
        for sock in (self.client, self.server):
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass
        for d in (self.up, self.down):
            fds = [d.ctl] + list(d.pipe or ())
            d.pipe = None
            for fd in fds:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.proxy.connection_closed(self)

