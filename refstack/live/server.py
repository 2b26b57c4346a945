"""The platform's live pipeline, modelled on the AVideo encoder-blacklist incident.

AVideo runbook (avideo-encoder-blacklist.zh.txt), and where each part lives here:

* "live stream receiving module" -> the **ingest** port: a publisher (OBS, or ffmpeg) pushes
  MPEG-TS, raw over TCP (stream ``LIVE_DEFAULT_STREAM``) or as ``POST /live/<stream>``.
* "emergency plan: local recording as backup" -> every received packet is appended to
  ``backup/<stream>/backup_<ms>.ts`` before anything else happens to it.
* "encoder cluster" -> the **relay** port: encoders connect (``GET /relay/<stream>``), each
  from its own IP, and record what they get (``python -m refstack.live.encoder``).
* "permission control: encoder IP put on the blacklist" -> the **blocklist**: a blocked IP
  is refused (403) and its open relay connections are cut at once.
* "remedy: put every encoder IP on the allowlist" -> the **allowlist** wins: an
  allowlisted IP can never be blocked.
* "monitor encoder connection status" / "automatic recording alert" -> per-encoder state
  and the ``encoder_unreachable`` alert (API and ``/metrics``), raised when an encoder has
  had no data for ``LIVE_ALERT_AFTER_S`` while its stream is live, cleared on recovery.
* "admin manual intervention, e.g. force re-record" -> ``POST /streams/<s>/rerecord``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import time
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, PlainTextResponse
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from pydantic import BaseModel

from refstack.broken import is_broken
from refstack.live import recording
from refstack.live.ts import TsAligner

READ_CHUNK = 64 * 1024
HEADER_TIMEOUT_S = 5.0
WATCHDOG_TICK_S = 0.25
#: A relay client this far behind is cut (it reconnects and the backup covers the hole).
MAX_PENDING_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8095
    ingest_port: int = 8096
    relay_port: int = 8097
    data_dir: Path = Path("/tmp/refstack-live")
    default_stream: str = "live"
    alert_after_s: float = 2.0  # no data this long while live -> encoder_unreachable
    alert_window_s: float = 10.0  # the runbook bar: alert within, and no gap longer than, this
    gap_threshold_s: float = 0.5  # a hole in packet times longer than this is reported as a gap
    blocklist: tuple[str, ...] = ()
    allowlist: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        e = dict(os.environ if env is None else env)

        def lst(name: str) -> tuple[str, ...]:
            return tuple(x.strip() for x in e.get(name, "").split(",") if x.strip())

        def need(name: str) -> int:
            if name not in e:
                raise SystemExit(f"{name} is required (the harness must know every port); got none")
            return int(e[name])

        return cls(
            host=e.get("LIVE_HOST", "127.0.0.1"),
            port=need("LIVE_PORT"),
            ingest_port=need("LIVE_INGEST_PORT"),
            relay_port=need("LIVE_RELAY_PORT"),
            data_dir=Path(e.get("LIVE_DATA_DIR", "/tmp/refstack-live")),
            default_stream=e.get("LIVE_DEFAULT_STREAM", "live"),
            alert_after_s=float(e.get("LIVE_ALERT_AFTER_S", "2.0")),
            alert_window_s=float(e.get("LIVE_ALERT_WINDOW_S", "10.0")),
            gap_threshold_s=float(e.get("LIVE_GAP_THRESHOLD_S", "0.5")),
            blocklist=lst("LIVE_BLOCKLIST"),
            allowlist=lst("LIVE_ALLOWLIST"),
        )


# ---- state ------------------------------------------------------------------------------


class Subscriber:
    """One encoder connection on the relay."""

    def __init__(self, ip: str, writer: asyncio.StreamWriter) -> None:
        self.ip = ip
        self.writer = writer
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.pending = 0
        self.cut_reason: str | None = None

    def offer(self, chunk: bytes) -> None:
        if self.pending > MAX_PENDING_BYTES:
            self.cut("slow consumer")
            return
        self.pending += len(chunk)
        self.queue.put_nowait(chunk)

    def cut(self, reason: str) -> None:
        if self.cut_reason is None:
            self.cut_reason = reason
            self.queue.put_nowait(None)
            self.writer.transport.abort()  # RST now, not after the queue drains


@dataclass
class Stream:
    name: str
    live: bool = False
    started_at: float | None = None
    ended_at: float | None = None
    last_data_at: float | None = None
    bytes_in: int = 0
    backup_bytes: int = 0
    publishes: int = 0
    publisher: str | None = None
    backup: Any = None  # open file of the current backup recording
    subscribers: set[Subscriber] = field(default_factory=set)


@dataclass
class Encoder:
    ip: str
    stream: str
    connections: int = 0
    connected_at: float | None = None
    disconnected_at: float | None = None
    last_data_at: float | None = None
    bytes_out: int = 0
    refused: int = 0
    last_refused_at: float | None = None
    sessions: int = 0


@dataclass
class Alert:
    name: str
    encoder: str
    stream: str
    reason: str
    lost_at: float
    raised_at: float
    cleared_at: float | None = None
    cleared_because: str | None = None
    states: list[str] = field(default_factory=list)  # encoder states seen while active

    def __post_init__(self) -> None:
        self.states = self.states or [self.reason]

    @property
    def active(self) -> bool:
        return self.cleared_at is None

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "active": self.active}


def _network(entry: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(entry.strip(), strict=False)
    except ValueError as exc:
        raise HTTPException(400, f"{entry!r} is not an IP address or CIDR range: {exc}") from exc


class Live:
    """All live state. Lives on one asyncio loop; no globals."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.streams: dict[str, Stream] = {}
        self.encoders: dict[str, Encoder] = {}
        self.alerts: dict[str, Alert] = {}  # active, by encoder ip
        self.history: list[Alert] = []
        self.blocklist: list[str] = [str(_network(x)) for x in settings.blocklist]
        self.allowlist: list[str] = [str(_network(x)) for x in settings.allowlist]
        self.ingest_writers: set[asyncio.StreamWriter] = set()

    # -- access control: the allowlist wins --
    @staticmethod
    def _in(ip: str, entries: list[str]) -> bool:
        addr = ipaddress.ip_address(ip)
        return any(addr in ipaddress.ip_network(e) for e in entries)

    def blocked(self, ip: str) -> bool:
        if not self._in(ip, self.blocklist):
            return False
        if is_broken("live_blocklist_beats_allowlist"):
            return True  # BUG: the blocklist is checked alone
        return not self._in(ip, self.allowlist)

    def enforce(self) -> list[str]:
        """Cut every relay connection whose IP is now blocked; the IPs cut."""
        cut = []
        for st in self.streams.values():
            for sub in list(st.subscribers):
                if self.blocked(sub.ip):
                    sub.cut("blocked")
                    cut.append(sub.ip)
        return sorted(set(cut))

    # -- objects --
    def stream(self, name: str) -> Stream:
        if name not in self.streams:
            self.streams[name] = Stream(name)
        return self.streams[name]

    def encoder(self, ip: str, stream: str) -> Encoder:
        enc = self.encoders.get(ip)
        if enc is None:
            enc = self.encoders[ip] = Encoder(ip=ip, stream=stream)
        enc.stream = stream
        return enc

    def encoder_state(self, enc: Encoder, now: float) -> str:
        if enc.connections > 0 and not self.blocked(enc.ip):
            st = self.streams.get(enc.stream)
            if st is None or not st.live or self._fresh(enc, st, now):
                return "connected"
            return "stalled"
        if self.blocked(enc.ip):
            return "blocked"
        st = self.streams.get(enc.stream)
        return "unreachable" if st is not None and st.live else "disconnected"

    def _fresh(self, enc: Encoder, st: Stream, now: float) -> bool:
        # Healthy: it got data no older than the stream's own newest data, give or take.
        newest = st.last_data_at or now
        return enc.last_data_at is not None and newest - enc.last_data_at <= self.s.alert_after_s

    # -- ingest --
    def on_publish(self, st: Stream, peer: str) -> None:
        now = time.time()
        st.live, st.started_at, st.ended_at, st.last_data_at = True, now, None, None
        st.publishes += 1
        st.publisher = peer
        if not is_broken("live_no_backup_recording"):
            d = self.s.data_dir / "backup" / st.name
            d.mkdir(parents=True, exist_ok=True)
            st.backup = open(d / f"backup_{int(now * 1000)}.ts", "ab")  # noqa: SIM115 - closed in on_unpublish

    def on_data(self, st: Stream, packets: bytes) -> None:
        st.last_data_at = time.time()
        st.bytes_in += len(packets)
        if st.backup is not None:
            st.backup.write(packets)  # backup first: it must hold everything we received
            st.backup.flush()
            st.backup_bytes += len(packets)
        for sub in list(st.subscribers):
            sub.offer(packets)

    def on_unpublish(self, st: Stream) -> None:
        st.live, st.ended_at, st.publisher = False, time.time(), None
        if st.backup is not None:
            st.backup.close()
            st.backup = None
        for sub in list(st.subscribers):
            sub.queue.put_nowait(None)  # end of stream: encoders close their session

    # -- alerts --
    def watch(self, now: float) -> None:
        for enc in self.encoders.values():
            st = self.streams.get(enc.stream)
            active = self.alerts.get(enc.ip)
            state = self.encoder_state(enc, now)
            if st is None or not st.live:
                if active:
                    self._clear(active, now, "stream ended")
                continue
            if state == "connected":
                if active:
                    self._clear(active, now, "encoder receiving again")
                continue
            lost_at = max(enc.last_data_at or 0.0, st.started_at or now)
            if active is None and now - lost_at >= self.s.alert_after_s and not is_broken("live_no_alert"):
                alert = Alert("encoder_unreachable", enc.ip, st.name, state, lost_at, now)
                self.alerts[enc.ip] = alert
                self.history.append(alert)
            elif active is not None and active.states[-1] != state:
                active.states.append(state)  # e.g. blocked -> stalled while it reconnects

    def _clear(self, alert: Alert, now: float, why: str) -> None:
        alert.cleared_at, alert.cleared_because = now, why
        self.alerts.pop(alert.encoder, None)

    # -- views --
    def encoder_view(self, enc: Encoder, now: float) -> dict[str, Any]:
        return {
            "ip": enc.ip,
            "stream": enc.stream,
            "state": self.encoder_state(enc, now),
            "connected": enc.connections > 0,
            "connections": enc.connections,
            "blocklisted": self._in(enc.ip, self.blocklist),
            "allowlisted": self._in(enc.ip, self.allowlist),
            "connected_at": enc.connected_at,
            "disconnected_at": enc.disconnected_at,
            "last_data_at": enc.last_data_at,
            "last_data_age_s": None if enc.last_data_at is None else round(now - enc.last_data_at, 3),
            "bytes_out": enc.bytes_out,
            "sessions": enc.sessions,
            "refused": enc.refused,
            "last_refused_at": enc.last_refused_at,
        }

    def stream_view(self, st: Stream) -> dict[str, Any]:
        d = self.s.data_dir
        return {
            "name": st.name,
            "live": st.live,
            "publisher": st.publisher,
            "started_at": st.started_at,
            "ended_at": st.ended_at,
            "last_data_at": st.last_data_at,
            "bytes_in": st.bytes_in,
            "backup_bytes": st.backup_bytes,
            "publishes": st.publishes,
            "relay_clients": sorted(s.ip for s in st.subscribers),
            "recording": {
                "backup": [{"file": str(p), "bytes": p.stat().st_size} for p in recording.backup_files(d, st.name)],
                "encoders": {
                    ip: [{"file": str(p), "bytes": p.stat().st_size} for p in files]
                    for ip, files in recording.encoder_files(d, st.name).items()
                },
                "final": recording.last_report(d, st.name),
            },
        }

    def access_view(self) -> dict[str, Any]:
        return {
            "blocklist": list(self.blocklist),
            "allowlist": list(self.allowlist),
            "effective_blocked_encoders": sorted(ip for ip in self.encoders if self.blocked(ip)),
            "rule": "allowlist wins: an allowlisted IP is never blocked",
        }


# ---- wire protocols -----------------------------------------------------------------------


async def _read_head(reader: asyncio.StreamReader, first: bytes = b"") -> tuple[str, str, dict[str, str]]:
    raw = first + await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEADER_TIMEOUT_S)
    lines = raw.decode("latin-1").split("\r\n")
    method, path, _ = (lines[0].split(" ") + ["", "", ""])[:3]
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return method.upper(), path, headers


def _http(writer: asyncio.StreamWriter, status: str, body: str = "", extra: str = "") -> None:
    data = body.encode()
    writer.write(
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(data)}\r\n"
        f"Connection: close\r\n{extra}\r\n".encode() + data
    )


async def _chunks(reader: asyncio.StreamReader, chunked: bool):
    if not chunked:
        while data := await reader.read(READ_CHUNK):
            yield data
        return
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            return
        remaining = size
        while remaining:
            data = await reader.read(min(remaining, READ_CHUNK))
            if not data:
                return
            remaining -= len(data)
            yield data
        await reader.readexactly(2)


async def handle_ingest(live: Live, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    peer = writer.get_extra_info("peername")[0]
    live.ingest_writers.add(writer)
    is_http = False
    st: Stream | None = None
    try:
        first = await reader.read(1)
        if not first:
            return
        prefix = b""
        chunked = False
        if first[0] == 0x47:  # raw MPEG-TS over TCP: the default stream
            name, prefix = live.s.default_stream, first
        else:
            is_http = True
            method, path, headers = await _read_head(reader, first)
            parts = [p for p in path.split("?")[0].split("/") if p]
            if method not in ("POST", "PUT") or not parts:
                _http(writer, "405 Method Not Allowed", "publish with POST /live/<stream>\n")
                return
            name = parts[-1]
            chunked = "chunked" in headers.get("transfer-encoding", "").lower()
            if headers.get("expect", "").lower() == "100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        st = live.stream(name)
        if st.live:
            if is_http:
                _http(writer, "409 Conflict", f"stream {name!r} already has a publisher ({st.publisher})\n")
            st = None
            return
        live.on_publish(st, peer)
        aligner = TsAligner()
        if prefix:
            aligner.feed(prefix)  # one byte: kept until the rest of its packet arrives
        async for data in _chunks(reader, chunked):
            packets = aligner.feed(data)
            if packets:
                live.on_data(st, packets)
        if is_http:
            _http(writer, "200 OK", "")
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError):
        pass
    finally:
        if st is not None and st.live:
            live.on_unpublish(st)
        live.ingest_writers.discard(writer)
        with suppress(Exception):
            await writer.drain()
        writer.close()


async def handle_relay(live: Live, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    ip = writer.get_extra_info("peername")[0]
    try:
        method, path, _ = await _read_head(reader)
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError):
        writer.close()
        return
    parts = [p for p in path.split("?")[0].split("/") if p]
    if method != "GET" or len(parts) != 2 or parts[0] != "relay":
        _http(writer, "404 Not Found", "encoders read GET /relay/<stream>\n")
        writer.close()
        return
    enc = live.encoder(ip, parts[1])
    if live.blocked(ip):
        # AVideo: the encoder's IP is on the blacklist, so it cannot fetch the stream.
        enc.refused += 1
        enc.last_refused_at = time.time()
        _http(writer, "403 Forbidden", f"encoder IP {ip} is blocklisted; allowlist it to receive streams\n")
        with suppress(Exception):
            await writer.drain()
        writer.close()
        return
    st = live.stream(parts[1])
    sub = Subscriber(ip, writer)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n")
    st.subscribers.add(sub)
    enc.connections += 1
    enc.connected_at = time.time()

    async def watch_eof() -> None:
        with suppress(Exception):
            await reader.read()  # the encoder sends nothing more; EOF means it went away
        sub.cut("encoder closed")

    eof_task = asyncio.create_task(watch_eof())
    started = False
    try:
        while (chunk := await sub.queue.get()) is not None:
            sub.pending -= len(chunk)
            writer.write(chunk)
            await writer.drain()
            if not started:
                started = True
                enc.sessions += 1
            enc.last_data_at = time.time()
            enc.bytes_out += len(chunk)
    except (ConnectionError, OSError):
        pass
    finally:
        eof_task.cancel()
        st.subscribers.discard(sub)
        enc.connections -= 1
        enc.disconnected_at = time.time()
        with suppress(Exception):
            writer.close()


# ---- admin API ----------------------------------------------------------------------------


class EntryIn(BaseModel):
    ip: str  # an address or a CIDR range


class EntriesIn(BaseModel):
    entries: list[str]


class EncoderIn(BaseModel):
    ip: str
    stream: str | None = None


class LiveCollector:
    """Prometheus view of the live state, computed at scrape time."""

    def __init__(self, live: Live) -> None:
        self.live = live

    def collect(self):
        live, now = self.live, time.time()
        connected = GaugeMetricFamily("refstack_live_encoder_connected", "1 when the encoder has an open relay connection", labels=["encoder", "stream"])
        state = GaugeMetricFamily("refstack_live_encoder_state", "1 for the encoder's current state", labels=["encoder", "state"])
        age = GaugeMetricFamily("refstack_live_encoder_last_data_age_seconds", "seconds since the encoder last got data", labels=["encoder"])
        refused = CounterMetricFamily("refstack_live_encoder_refused", "relay connections refused (blocklist)", labels=["encoder"])
        alert = GaugeMetricFamily("refstack_live_alert_active", "1 while the alert is active", labels=["alertname", "encoder", "stream"])
        for enc in live.encoders.values():
            current = live.encoder_state(enc, now)
            connected.add_metric([enc.ip, enc.stream], 1.0 if current == "connected" else 0.0)
            for s in ("connected", "stalled", "blocked", "unreachable", "disconnected"):
                state.add_metric([enc.ip, s], 1.0 if s == current else 0.0)
            if enc.last_data_at is not None:
                age.add_metric([enc.ip], now - enc.last_data_at)
            refused.add_metric([enc.ip], float(enc.refused))
            alert.add_metric(["encoder_unreachable", enc.ip, enc.stream], 1.0 if enc.ip in live.alerts else 0.0)
        is_live = GaugeMetricFamily("refstack_live_stream_live", "1 while a publisher is pushing", labels=["stream"])
        ingest = CounterMetricFamily("refstack_live_ingest_bytes", "bytes received from the publisher", labels=["stream"])
        backup = CounterMetricFamily("refstack_live_backup_bytes", "bytes written to the local backup recording", labels=["stream"])
        for st in live.streams.values():
            is_live.add_metric([st.name], 1.0 if st.live else 0.0)
            ingest.add_metric([st.name], float(st.bytes_in))
            backup.add_metric([st.name], float(st.backup_bytes))
        yield from (connected, state, age, refused, alert, is_live, ingest, backup)


def create_app(settings: Settings) -> FastAPI:
    live = Live(settings)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LiveCollector(live))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        ingest = await asyncio.start_server(
            lambda r, w: handle_ingest(live, r, w), settings.host, settings.ingest_port, reuse_address=True
        )
        relay = await asyncio.start_server(
            lambda r, w: handle_relay(live, r, w), settings.host, settings.relay_port, reuse_address=True
        )

        async def watchdog() -> None:
            while True:
                live.watch(time.time())
                await asyncio.sleep(WATCHDOG_TICK_S)  # a periodic check, not a wait

        dog = asyncio.create_task(watchdog())
        try:
            yield
        finally:
            dog.cancel()
            ingest.close()
            relay.close()
            for w in list(live.ingest_writers):
                w.transport.abort()
            for st in live.streams.values():
                for sub in list(st.subscribers):
                    sub.cut("shutdown")
                if st.backup is not None:
                    st.backup.close()
                    st.backup = None

    app = FastAPI(title="refstack live recording", lifespan=lifespan)
    app.state.live = live

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "ingest_port": settings.ingest_port, "relay_port": settings.relay_port}

    @app.get("/status")
    async def status() -> dict[str, Any]:
        now = time.time()
        return {
            "now": now,
            "settings": {
                "ingest_port": settings.ingest_port, "relay_port": settings.relay_port,
                "data_dir": str(settings.data_dir), "default_stream": settings.default_stream,
                "alert_after_s": settings.alert_after_s, "alert_window_s": settings.alert_window_s,
                "gap_threshold_s": settings.gap_threshold_s,
            },
            "streams": [live.stream_view(st) for st in live.streams.values()],
            "encoders": [live.encoder_view(e, now) for e in live.encoders.values()],
            "alerts": {"active": [a.as_dict() for a in live.alerts.values()], "history": [a.as_dict() for a in live.history]},
            "access": live.access_view(),
        }

    # -- streams and recordings --
    @app.get("/streams")
    async def streams() -> list[dict[str, Any]]:
        return [live.stream_view(st) for st in live.streams.values()]

    @app.get("/streams/{name}")
    async def stream(name: str) -> dict[str, Any]:
        if name not in live.streams:
            raise HTTPException(404, f"no stream {name!r}; known: {sorted(live.streams)}")
        return live.stream_view(live.streams[name])

    def _build(name: str, backup_only: bool, gap_threshold_s: float | None) -> dict[str, Any]:
        try:
            report = recording.build(
                settings.data_dir, name, from_backup_only=backup_only,
                gap_threshold_s=gap_threshold_s or settings.gap_threshold_s,
                alert_window_s=settings.alert_window_s,
            )
        except FileNotFoundError as exc:
            raise HTTPException(409, str(exc)) from exc
        st = live.streams.get(name)
        report["stream_live"] = bool(st and st.live)
        return report

    @app.post("/streams/{name}/finalize")
    def finalize(name: str, gap_threshold_s: float | None = None) -> dict[str, Any]:
        """Final recording: encoder sessions, holes filled from the backup; with its gap report."""
        return _build(name, False, gap_threshold_s)

    @app.post("/streams/{name}/rerecord")
    def rerecord(name: str, gap_threshold_s: float | None = None) -> dict[str, Any]:
        """Admin: force a re-record, rebuilding the final recording from the backup alone."""
        return _build(name, True, gap_threshold_s)

    @app.get("/streams/{name}/coverage")
    def stream_coverage(name: str, gap_threshold_s: float | None = None) -> dict[str, Any]:
        """Coverage and gaps of the backup and of each encoder's sessions so far (ffprobe)."""
        return recording.coverage_report(settings.data_dir, name, gap_threshold_s or settings.gap_threshold_s)

    @app.get("/streams/{name}/recording")
    def report(name: str) -> dict[str, Any]:
        r = recording.last_report(settings.data_dir, name)
        if r is None:
            raise HTTPException(404, f"stream {name!r} has no final recording yet; POST /streams/{name}/finalize")
        return r

    @app.get("/streams/{name}/recording/file")
    def recording_file(name: str) -> FileResponse:
        path = settings.data_dir / "final" / name / "final.ts"
        if not path.is_file():
            raise HTTPException(404, f"stream {name!r} has no final recording yet")
        return FileResponse(path, media_type="video/mp2t")

    # -- encoders --
    @app.get("/encoders")
    async def encoders() -> list[dict[str, Any]]:
        now = time.time()
        return [live.encoder_view(e, now) for e in live.encoders.values()]

    @app.post("/encoders")
    async def register_encoder(body: EncoderIn) -> dict[str, Any]:
        """Declare an expected encoder, so it is monitored even before it first connects."""
        try:
            ipaddress.ip_address(body.ip)
        except ValueError as exc:
            raise HTTPException(400, f"{body.ip!r} is not an IP address") from exc
        known = live.encoders.get(body.ip)
        enc = live.encoder(body.ip, body.stream or (known.stream if known else settings.default_stream))
        return live.encoder_view(enc, time.time())

    @app.delete("/encoders/{ip}")
    async def forget_encoder(ip: str) -> dict[str, Any]:
        live.encoders.pop(ip, None)
        alert = live.alerts.get(ip)
        if alert:
            live._clear(alert, time.time(), "encoder removed")
        return {"removed": ip}

    # -- alerts --
    @app.get("/alerts")
    async def alerts() -> dict[str, Any]:
        return {"active": [a.as_dict() for a in live.alerts.values()], "history": [a.as_dict() for a in live.history]}

    # -- access lists --
    def _list(kind: str) -> list[str]:
        return live.blocklist if kind == "blocklist" else live.allowlist

    for kind in ("blocklist", "allowlist"):

        def make(kind: str) -> None:
            @app.get(f"/{kind}", name=f"get_{kind}")
            async def get_list() -> dict[str, Any]:
                return live.access_view()

            @app.post(f"/{kind}", name=f"add_{kind}")
            async def add(body: EntryIn) -> dict[str, Any]:
                entry = str(_network(body.ip))
                entries = _list(kind)
                if entry not in entries:
                    entries.append(entry)
                cut = live.enforce()
                view = live.access_view()
                view["cut"] = cut
                if kind == "blocklist":
                    protected = sorted(ip for ip in live.encoders if live._in(ip, [entry]) and not live.blocked(ip))
                    view["not_blocked_because_allowlisted"] = protected
                return view

            @app.put(f"/{kind}", name=f"set_{kind}")
            async def replace(body: EntriesIn) -> dict[str, Any]:
                entries = _list(kind)
                entries[:] = [str(_network(e)) for e in body.entries]
                view = live.access_view()
                view["cut"] = live.enforce()
                return view

            @app.delete(f"/{kind}/{{entry:path}}", name=f"del_{kind}")
            async def remove(entry: str) -> dict[str, Any]:
                net = str(_network(entry))
                entries = _list(kind)
                if net not in entries:
                    raise HTTPException(404, f"{net} is not on the {kind}: {entries}")
                entries.remove(net)
                view = live.access_view()
                view["cut"] = live.enforce()  # removing an allow entry can expose a blocked IP
                return view

        make(kind)

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(registry).decode(), media_type="text/plain; version=0.0.4")

    return app
