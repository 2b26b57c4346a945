"""Proxies and the collection of proxies: listeners, toxics, connections, counters.

All methods here run on the API's event-loop thread; connections live on their
own threads (see :mod:`renderchaos_proxy.link`) and only report back through
:meth:`Proxy.connection_closed`, under a lock.
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
from typing import Any

from renderchaos_proxy.errors import (
    PROXY_EXISTS,
    PROXY_NOT_FOUND,
    TOXIC_EXISTS,
    TOXIC_NOT_FOUND,
    ApiError,
)
from renderchaos_proxy.link import Connection
from renderchaos_proxy.toxics import Toxic, merge_attributes

DIRECTIONS = ("upstream", "downstream")


def split_hostport(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not _:
        raise ValueError(f"missing port in address {address}")
    host = host.strip("[]")
    return host, int(port or 0)


def _go_addr(ip: str, port: int) -> str:
    """An address as Go's TCPAddr.String() writes it: ``1.2.3.4:80``, ``[::1]:80``, ``:80`` (no IP)."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


class Proxy:
    def __init__(self, collection: "ProxyCollection", name: str, listen: str, upstream: str) -> None:
        self.collection = collection
        self.name = name
        self.listen = listen or "127.0.0.1:0"
        self.upstream = upstream
        self.enabled = False
        self.toxics: list[Toxic] = []
        self.connections: dict[int, Connection] = {}
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.closed_bytes = {("received", d): 0 for d in DIRECTIONS} | {("sent", d): 0 for d in DIRECTIONS}

    # -- JSON ---------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "toxics": [t.to_json() for t in self.toxics],
        }

    def upstream_address(self) -> tuple[str, int]:
        return split_hostport(self.upstream)

    # -- listener -----------------------------------------------------------------
    def start(self) -> None:
        if self.enabled:
            return
        where = self.listen  # what the error names: the resolved address once known, as Go does
        try:
            host, port = split_hostport(self.listen)
            infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            infos.sort(key=lambda info: info[0] != socket.AF_INET)  # "localhost" -> 127.0.0.1, as Go does
            family, _, _, _, addr = infos[0]
            where = _go_addr(host and addr[0], addr[1])
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(addr)
                sock.listen(1024)
            except OSError:
                sock.close()
                raise
        except (OSError, ValueError) as exc:
            reason = exc.strerror.lower() if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ApiError(f"listen tcp {where}: bind: {reason}", 500) from exc
        sock.setblocking(False)
        bound = sock.getsockname()
        self.listen = _go_addr(bound[0], bound[1])
        self._listener = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._accept)
        self.enabled = True

    def stop(self) -> None:
        """Close the listener and cut every connection (the ``down`` fault)."""
        if self._listener is not None:
            try:
                asyncio.get_running_loop().remove_reader(self._listener.fileno())
            except RuntimeError:
                pass
            self._listener.close()
            self._listener = None
        self.enabled = False
        for conn in self.snapshot():
            conn.cut()

    def _accept(self) -> None:
        listener = self._listener
        while listener is not None:
            try:
                client, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            conn = Connection(self, client, self.collection.rng)
            with self._lock:
                self.connections[conn.id] = conn
            order = [t.name for t in self.toxics]
            for toxic in self.toxics:  # toxicity rolled once per connection and direction
                conn.direction(toxic.direction).set_toxic(toxic, order)
            conn.start()

    def snapshot(self) -> list[Connection]:
        with self._lock:
            return list(self.connections.values())

    def connection_closed(self, conn: Connection) -> None:
        with self._lock:
            self.connections.pop(conn.id, None)
            for d in (conn.up, conn.down):
                self.closed_bytes[("received", d.name)] += d.received
                self.closed_bytes[("sent", d.name)] += d.sent

    def byte_counts(self) -> dict[tuple[str, str], int]:
        with self._lock:
            counts = dict(self.closed_bytes)
            conns = list(self.connections.values())
        for conn in conns:
            for d in (conn.up, conn.down):
                counts[("received", d.name)] += d.received
                counts[("sent", d.name)] += d.sent
        return counts

    # -- toxics -------------------------------------------------------------------
    def find_toxic(self, name: str) -> Toxic:
        for toxic in self.toxics:
            if toxic.name == name:
                return toxic
        raise ApiError(TOXIC_NOT_FOUND, 404)

    def add_toxic(self, toxic: Toxic) -> Toxic:
        if any(t.name == toxic.name for t in self.toxics):
            raise ApiError(TOXIC_EXISTS, 409)
        self.toxics.append(toxic)
        self._apply(toxic)
        return toxic

    def update_toxic(self, name: str, body: Any) -> Toxic:
        toxic = self.find_toxic(name)
        if not isinstance(body, dict):
            raise ApiError("bad request body: json: cannot unmarshal into toxic", 400)
        attributes = merge_attributes(toxic.type, toxic.attributes, body.get("attributes"))
        toxicity = body.get("toxicity", toxic.toxicity)
        if toxicity is None or isinstance(toxicity, bool) or not isinstance(toxicity, (int, float)):
            raise ApiError("bad request body: json: cannot unmarshal toxicity into float32", 400)
        toxic.attributes = attributes
        toxic.toxicity = float(toxicity)
        self._apply(toxic)
        return toxic

    def _apply(self, toxic: Toxic) -> None:
        order = [t.name for t in self.toxics]
        for conn in self.snapshot():
            conn.direction(toxic.direction).set_toxic(toxic, order)

    def remove_toxic(self, name: str) -> None:
        toxic = self.find_toxic(name)
        self.toxics.remove(toxic)
        order = [t.name for t in self.toxics]
        for conn in self.snapshot():
            was_active = conn.direction(toxic.direction).remove_toxic(name, order)
            if was_active and toxic.type == "timeout":
                conn.cut()  # like Toxiproxy: removing a timeout toxic closes its connections

    def remove_all_toxics(self) -> None:
        for toxic in list(self.toxics):
            self.remove_toxic(toxic.name)


class ProxyCollection:
    def __init__(self, seed: int | None = None) -> None:
        self.proxies: dict[str, Proxy] = {}
        self.rng = random.Random(seed)

    def get(self, name: str) -> Proxy:
        try:
            return self.proxies[name]
        except KeyError:
            raise ApiError(PROXY_NOT_FOUND, 404) from None

    def add(self, proxy: Proxy, start: bool) -> Proxy:
        if proxy.name in self.proxies:
            raise ApiError(PROXY_EXISTS, 409)
        if start:
            proxy.start()
        self.proxies[proxy.name] = proxy
        return proxy

    def add_or_replace(self, proxy: Proxy, start: bool) -> Proxy:
        existing = self.proxies.get(proxy.name)
        if existing is not None:
            if existing.listen == proxy.listen and existing.upstream == proxy.upstream:
                return existing  # unchanged: kept, with its toxics and connections
            existing.stop()
            del self.proxies[proxy.name]
        if start:
            proxy.start()
        self.proxies[proxy.name] = proxy
        return proxy

    def remove(self, name: str) -> None:
        proxy = self.get(name)
        proxy.stop()
        del self.proxies[name]

    def update(self, name: str, body: dict[str, Any]) -> Proxy:
        proxy = self.get(name)
        listen = body.get("listen", proxy.listen)
        upstream = body.get("upstream", proxy.upstream)
        enabled = body.get("enabled", proxy.enabled)
        for key, value in (("listen", listen), ("upstream", upstream)):
            if not isinstance(value, str):
                raise ApiError(f"bad request body: json: cannot unmarshal into field {key} of type string", 400)
        if not isinstance(enabled, bool):
            raise ApiError("bad request body: json: cannot unmarshal into field enabled of type bool", 400)
        if listen != proxy.listen or upstream != proxy.upstream:
            was = proxy.enabled
            proxy.stop()  # restart: connections are dropped
            proxy.listen, proxy.upstream = listen or "127.0.0.1:0", upstream
            if was and enabled:
                proxy.start()
        if enabled and not proxy.enabled:
            proxy.start()
        elif not enabled and proxy.enabled:
            proxy.stop()
        return proxy

    def reset(self) -> None:
        for proxy in list(self.proxies.values()):
            if not proxy.enabled:
                proxy.start()
            proxy.remove_all_toxics()

    def clear(self) -> None:
        for name in list(self.proxies):
            self.remove(name)
