"""A Toxiproxy 2.12-compatible fault proxy in pure-stdlib Python.

Run ``renderchaos-proxy`` (flags as ``toxiproxy-server``: ``-host``, ``-port``,
``-config FILE``, ``-seed N``; ``--host`` style works too) and drive it with any
Toxiproxy client. The HTTP API is served on asyncio; every proxied connection is
pumped by two threads, zero-copy (``os.splice``) while it has no active toxic.

Toxics
------
A toxic acts on one ``stream`` of every connection of a proxy: ``upstream``
(client to server) or ``downstream`` (server to client, the default). Its
``toxicity`` (0..1) is rolled once per connection and direction when the toxic
is added or updated (and when a connection opens); toxicity 0 never acts.

``latency``     ``latency``, ``jitter`` (ms): each chunk is held latency +/- uniform jitter
                after it arrived. Bytes keep being read meanwhile (up to 8 MiB in flight),
                so a stream is delayed, not throttled to one chunk per delay as in Go.
``bandwidth``   ``rate`` (KB/s, 1 KB = 1000 B): released in 100 ms slices; rate 0 stalls.
``slow_close``  ``delay`` (ms): the close (EOF) is passed on that much later.
``timeout``     ``timeout`` (ms): see below.
``reset_peer``  ``timeout`` (ms): once data arrives, wait, then close both sides with a
                TCP RST (SO_LINGER 0); the client's next read fails with ECONNRESET.
``slicer``      ``average_size``, ``size_variation`` (bytes), ``delay`` (MICROseconds):
                splits each chunk into small writes.
``limit_data``  ``bytes``: once that many bytes passed in this direction, close the
                connection (exactly that many are delivered).
``noop``        does nothing (Toxiproxy has it too).

``enabled: false`` on a proxy is the "down" fault: its listener is closed (new
connections are refused) and open connections are cut.

The ``timeout`` toxic, the one everybody gets wrong
---------------------------------------------------
It does **not** delay data and it does **not** make requests fail after N ms by
itself: from the moment it applies, every byte on its stream is **dropped**, and
after ``timeout`` ms the connection is **closed**. With ``timeout: 0`` the
connection is never closed; it just goes silent. Removing the toxic closes the
connections it was silencing (the bytes were dropped, so the stream would be
corrupt). Example: a client with a 2 s read timeout against a proxy carrying::

    POST /proxies/db/toxics
    {"type": "timeout", "stream": "upstream", "attributes": {"timeout": 0}}

sends its query, the query is swallowed, and the client's own 2 s read timeout
fires: that is how to test *client* timeouts. With ``{"timeout": 500}`` the
client instead sees the connection closed (EOF) after 500 ms: that tests how the
client handles a server that hangs up mid-request. Neither returns data.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import signal
import sys
import threading
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any, Callable
from urllib.parse import unquote

from renderchaos_proxy.errors import BAD_REQUEST_BODY, MISSING_FIELD, ApiError
from renderchaos_proxy.proxy import DIRECTIONS, Proxy, ProxyCollection
from renderchaos_proxy.toxics import toxic_from_json

VERSION = "2.12.0"
log = logging.getLogger("renderchaos_proxy")
_REASONS = {
    200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 409: "Conflict", 411: "Length Required",
    413: "Request Entity Too Large", 500: "Internal Server Error",
}
_XID = "0123456789abcdefghijklmnopqrstuv"
MAX_BODY = 16 * 1024 * 1024


def _request_id() -> str:
    return "".join(_XID[b & 31] for b in os.urandom(20))


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(obj: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(obj, separators=(",", ":")).encode())


def go_error(message: str, status: int) -> Response:
    """Go's http.Error: message + newline, text/plain, nosniff."""
    return Response(
        status,
        (message + "\n").encode(),
        "text/plain; charset=utf-8",
        {"X-Content-Type-Options": "nosniff"},
    )


def api_error(exc: ApiError) -> Response:
    return go_error(json.dumps({"error": exc.message, "status": exc.status}, separators=(",", ":")), exc.status)


def _decode(body: bytes) -> Any:
    try:
        return json.loads(body or b"null")
    except ValueError as exc:
        message = "EOF" if not body.strip() else f"invalid JSON: {exc}"
        raise ApiError(f"{BAD_REQUEST_BODY}: {message}", 400) from None


class ApiServer:
    """The Toxiproxy HTTP API over a :class:`ProxyCollection`."""

    def __init__(self, seed: int | None = None) -> None:
        self.collection = ProxyCollection(seed)
        self.routes: list[tuple[list[str], dict[str, Callable[..., Response]]]] = [
            (["reset"], {"POST": self.reset}),
            (["populate"], {"POST": self.populate}),
            (["version"], {"GET": self.version}),
            (["metrics"], {"GET": self.metrics}),
            (["proxies"], {"GET": self.proxy_index, "POST": self.proxy_create}),
            (["proxies", "*"], {"GET": self.proxy_show, "POST": self.proxy_update,
                                "PATCH": self.proxy_update, "DELETE": self.proxy_delete}),
            (["proxies", "*", "toxics"], {"GET": self.toxic_index, "POST": self.toxic_create}),
            (["proxies", "*", "toxics", "*"], {"GET": self.toxic_show, "POST": self.toxic_update,
                                               "PATCH": self.toxic_update, "DELETE": self.toxic_delete}),
        ]
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.Task] = set()

    # -- dispatch -----------------------------------------------------------------
    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Response:
        if headers.get("user-agent", "").startswith("Mozilla/"):
            return go_error("User agent not allowed", 403)
        parts = [unquote(p) for p in path.split("?", 1)[0].split("/")[1:]]
        for pattern, methods in self.routes:
            if len(pattern) != len(parts):
                continue
            if not all(p == "*" or p == q for p, q in zip(pattern, parts)):
                continue
            if any(p == "*" and not q for p, q in zip(pattern, parts)):
                continue
            handler = methods.get(method)
            if handler is None:
                return Response(405, b"", None)
            args = [q for p, q in zip(pattern, parts) if p == "*"]
            try:
                return handler(*args, body=body)
            except ApiError as exc:
                return api_error(exc)
            except Exception as exc:  # never kill the API on a bug; report it like Go does
                log.exception("internal error on %s %s", method, path)
                return api_error(ApiError(str(exc), 500))
        return go_error("404 page not found", 404)

    # -- handlers -----------------------------------------------------------------
    def version(self, body: bytes) -> Response:
        return Response(200, f'{{"version": "{VERSION}"}}\n'.encode(), "application/json;charset=utf-8")

    def reset(self, body: bytes) -> Response:
        self.collection.reset()
        return Response(204, b"", None)

    def proxy_index(self, body: bytes) -> Response:
        return json_response({name: p.to_json() for name, p in self.collection.proxies.items()})

    def _proxy_input(self, obj: Any, where: str = "") -> tuple[str, str, str, bool]:
        if not isinstance(obj, dict):
            raise ApiError(f"{BAD_REQUEST_BODY}: json: cannot unmarshal into proxy", 400)
        name, listen, upstream = obj.get("name") or "", obj.get("listen") or "", obj.get("upstream") or ""
        enabled = obj.get("enabled", True)
        enabled = True if enabled is None else enabled
        for key, value in (("name", name), ("listen", listen), ("upstream", upstream)):
            if not isinstance(value, str):
                raise ApiError(f"{BAD_REQUEST_BODY}: json: cannot unmarshal into field {key} of type string", 400)
        if not isinstance(enabled, bool):
            raise ApiError(f"{BAD_REQUEST_BODY}: json: cannot unmarshal into field enabled of type bool", 400)
        if not name:
            raise ApiError(f"{MISSING_FIELD}: name{where}", 400)
        if not upstream:
            raise ApiError(f"{MISSING_FIELD}: upstream{where}", 400)
        return name, listen, upstream, enabled

    def proxy_create(self, body: bytes) -> Response:
        name, listen, upstream, enabled = self._proxy_input(_decode(body))
        proxy = self.collection.add(Proxy(self.collection, name, listen, upstream), enabled)
        return json_response(proxy.to_json(), 201)

    def populate(self, body: bytes) -> Response:
        try:
            items = _decode(body)
            if isinstance(items, dict) and "proxies" in items:
                items = items["proxies"]  # also accept the config-file object form
            if not isinstance(items, list):
                raise ApiError(f"{BAD_REQUEST_BODY}: json: cannot unmarshal into []proxy", 400)
            inputs = [self._proxy_input(obj, f" at proxy {i + 1}") for i, obj in enumerate(items)]
        except ApiError as exc:
            return self._populate_response(exc, None)
        done: list[Proxy] = []
        for name, listen, upstream, enabled in inputs:
            try:
                done.append(self.collection.add_or_replace(Proxy(self.collection, name, listen, upstream), enabled))
            except ApiError as exc:
                return self._populate_response(exc, done)
        return self._populate_response(None, done)

    def _populate_response(self, exc: ApiError | None, proxies: list[Proxy] | None) -> Response:
        obj: dict[str, Any] = {}
        if exc is not None:
            obj = {"error": exc.message, "status": exc.status}
        # Go marshals an empty list of proxies as null (a nil slice), error or not
        obj["proxies"] = [p.to_json() for p in proxies] if proxies else None
        return json_response(obj, 201 if exc is None else exc.status)

    def proxy_show(self, name: str, body: bytes) -> Response:
        return json_response(self.collection.get(name).to_json())

    def proxy_update(self, name: str, body: bytes) -> Response:
        self.collection.get(name)
        obj = _decode(body)
        if not isinstance(obj, dict):
            raise ApiError(f"{BAD_REQUEST_BODY}: json: cannot unmarshal into proxy", 400)
        return json_response(self.collection.update(name, obj).to_json())

    def proxy_delete(self, name: str, body: bytes) -> Response:
        self.collection.remove(name)
        return Response(204, b"", None)

    def toxic_index(self, name: str, body: bytes) -> Response:
        return json_response([t.to_json() for t in self.collection.get(name).toxics])

    def toxic_create(self, name: str, body: bytes) -> Response:
        proxy = self.collection.get(name)
        toxic = proxy.add_toxic(toxic_from_json(_decode(body)))
        return json_response(toxic.to_json())

    def toxic_show(self, name: str, toxic: str, body: bytes) -> Response:
        return json_response(self.collection.get(name).find_toxic(toxic).to_json())

    def toxic_update(self, name: str, toxic: str, body: bytes) -> Response:
        proxy = self.collection.get(name)
        proxy.find_toxic(toxic)
        return json_response(proxy.update_toxic(toxic, _decode(body)).to_json())

    def toxic_delete(self, name: str, toxic: str, body: bytes) -> Response:
        self.collection.get(name).remove_toxic(toxic)
        return Response(204, b"", None)

    def metrics(self, body: bytes) -> Response:
        lines = []
        for kind, help_text in (("received", "received from"), ("sent", "sent to")):
            metric = f"toxiproxy_proxy_{kind}_bytes_total"
            lines.append(f"# HELP {metric} The total bytes {help_text} a given proxy link")
            lines.append(f"# TYPE {metric} counter")
            for proxy in self.collection.proxies.values():
                counts = proxy.byte_counts()
                for direction in DIRECTIONS:
                    labels = (
                        f'direction="{direction}",listener="{_esc(proxy.listen)}",'
                        f'proxy="{_esc(proxy.name)}",upstream="{_esc(proxy.upstream)}"'
                    )
                    lines.append(f"{metric}{{{labels}}} {counts[(kind, direction)]}")
        return Response(200, ("\n".join(lines) + "\n").encode(), "text/plain; version=0.0.4; charset=utf-8")

    # -- HTTP/1.1 over asyncio streams ----------------------------------------------
    async def _serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._clients.add(task)
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ConnectionError, asyncio.LimitOverrunError, ValueError):
                    return
                if not line:
                    return
                if not line.strip():
                    continue
                try:
                    method, target, proto = line.decode("latin-1").split()
                except ValueError:
                    await self._write(writer, go_error("400 Bad Request", 400), close=True)
                    return
                headers: dict[str, str] = {}
                while True:
                    hline = await reader.readline()
                    if not hline or hline in (b"\r\n", b"\n"):
                        break
                    key, _, value = hline.decode("latin-1").partition(":")
                    headers[key.strip().lower()] = value.strip()
                if headers.get("expect", "").lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # curl waits for it on big bodies
                if headers.get("transfer-encoding", "").lower() == "chunked":
                    body = await self._read_chunked(reader)
                else:
                    length = int(headers.get("content-length") or 0)
                    if length > MAX_BODY:
                        await self._write(writer, go_error("request body too large", 413), close=True)
                        return
                    body = await reader.readexactly(length) if length else b""
                conn_hdr = headers.get("connection", "").lower()
                close = conn_hdr == "close" or (proto == "HTTP/1.0" and conn_hdr != "keep-alive")
                response = self.handle(method.upper(), target, headers, body)
                await self._write(writer, response, close=close, head=method.upper() == "HEAD")
                if close:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return
        finally:
            self._clients.discard(task)
            writer.close()

    @staticmethod
    async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
        parts = []
        while True:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readline()

    @staticmethod
    async def _write(writer: asyncio.StreamWriter, r: Response, close: bool, head: bool = False) -> None:
        lines = [f"HTTP/1.1 {r.status} {_REASONS.get(r.status, 'Status')}"]
        if r.content_type:
            lines.append(f"Content-Type: {r.content_type}")
        for key, value in r.headers.items():
            lines.append(f"{key}: {value}")
        lines.append(f"X-Toxiproxy-Request-Id: {_request_id()}")
        lines.append(f"Date: {formatdate(usegmt=True)}")
        if r.status != 204:
            lines.append(f"Content-Length: {len(r.body)}")
        if close:
            lines.append("Connection: close")
        payload = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if not head and r.status != 204:
            payload += r.body
        writer.write(payload)
        await writer.drain()

    # -- lifecycle ----------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 8474) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._serve_client, host, port, reuse_address=True)
        sockname = self._server.sockets[0].getsockname()
        return sockname[0], sockname[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._clients):
            task.cancel()
        if self._clients:
            await asyncio.gather(*self._clients, return_exceptions=True)
        await asyncio.sleep(0)  # let the transports run connection_lost
        self.collection.clear()

    def load_config(self, path: str) -> None:
        with open(path, "rb") as fh:
            response = self.populate(fh.read())
        if response.status != 201:
            raise SystemExit(f"renderchaos-proxy: -config {path}: {response.body.decode()}")
        log.info("populated %d proxies from %s", len(json.loads(response.body)["proxies"]), path)


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class ServerThread:
    """Run an :class:`ApiServer` on its own event-loop thread (tests, embedding).

    ``with ServerThread() as server: server.url`` -> ``http://127.0.0.1:<port>``.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, seed: int | None = None) -> None:
        self.api = ApiServer(seed)
        self.host, self.port = host, port
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="renderchaos-proxy-api", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "ServerThread":
        self._thread.start()
        self.host, self.port = asyncio.run_coroutine_threadsafe(self.api.start(self.host, self.port), self.loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.api.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="renderchaos-proxy", description="Toxiproxy 2.12-compatible fault proxy.")
    p.add_argument("-host", "--host", default="127.0.0.1", help="host for the API server (default 127.0.0.1)")
    p.add_argument("-port", "--port", type=int, default=8474, help="port for the API server (default 8474)")
    p.add_argument("-config", "--config", default="", help="JSON file of proxies to create at start (/populate format)")
    p.add_argument("-seed", "--seed", type=int, default=None, help="seed for toxicity and jitter (repeatable runs)")
    p.add_argument("-proxy-metrics", "--proxy-metrics", action="store_true", help="accepted; metrics are always on")
    p.add_argument("-runtime-metrics", "--runtime-metrics", action="store_true", help="accepted; ignored")
    p.add_argument("-version", "--version", action="store_true", help="print the version and exit")
    return p


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.version:
        print(f"toxiproxy-server version {VERSION} (renderchaos-proxy)")
        return 0
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO").upper(), format="%(asctime)s %(levelname)s %(message)s")
    _raise_fd_limit()

    async def run() -> None:
        api = ApiServer(args.seed)
        if args.config:
            api.load_config(args.config)
        host, port = await api.start(args.host, args.port)
        log.info("API HTTP server starting on %s:%d (version %s)", host, port, VERSION)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await api.stop()

    try:
        asyncio.run(run())
    except OSError as exc:
        print(f"renderchaos-proxy: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
