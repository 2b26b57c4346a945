"""Streaming download scenarios (PeerTube runbook P): the remux pipe under client disconnects.

Downloads that must be aborted at the socket level (client close, TCP RST, a reset_peer toxic)
are raw HTTP requests the adapter describes (``download_request``: path and credentials); the
complete download goes through ``platform.download``. ffmpeg is counted in the ``api`` container.
"""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import httpx
import pytest

from renderchaos.errors import WaitTimeout
from renderchaos.faults.container import orphan_ffmpeg
from renderchaos.faults.network import RouteToxic
from renderchaos.platforms.base import ApiError, JobState
from renderchaos.probes.media import probe_bytes
from renderchaos.scenario import ScenarioRun, runs
from renderchaos.provisioning.stack.routes import ExtraRoute
from renderchaos.wait import Limit, Poll, Wait, wait_for
from scenarios import stream as S
from suites.conftest import brief

#: One API process with a cap of 4 remuxes makes the cap exact (it is per process); per-key
#: rate limiting off, because 50 downloads by one owner in a few seconds is the point here.
REMUX_CAP = 4
STACK_ENV = {"WEB_CONCURRENCY": "1", "REMUX_MAX_CONCURRENT": str(REMUX_CAP), "RATE_LIMIT_KEY_RATE": "0"}
VIDEO_S, WIDTH, HEIGHT = 20.0, 640, 360
#: A noisy background (ultrafast preset) makes the output ~30 MB: far more than the pipe (1 MiB), the API's read
#: buffer (8 MiB) and the socket buffers, so an unread download really blocks ffmpeg.
MIN_OUTPUT_BYTES = 20 * 1024 * 1024
ABORTS = 50
CONCURRENT = REMUX_CAP + 6  # held open at once: REMUX_CAP get 200, the rest 503 busy
VIA_TOXIC = 10  # of the 50, aborted by a reset_peer toxic on a proxy route in front of the API
CLIENT_RCVBUF = 64 * 1024
SOCKET = Wait(10.0, "one recv on a download socket")
NOISE = Wait(120.0, "ffmpeg on the host to make the noisy input")
RENDER = Wait(180.0, "the download video to render")
DOWNLOAD = Wait(120.0, "a complete download")
#: SCENARIOS.md: zero ffmpeg processes remain within 5 s of the aborts
ORPHAN_DEADLINE = Limit(5.0, "SCENARIOS.md stream.client_disconnect: zero ffmpeg within 5 s")
#: the complete download measures what was asked, to within this
DURATION_SLACK_S = 0.5


def make_noise(work_dir: Path, timeout: float, name: str = "noise.mp4") -> Path:
    """A 2 s 640x360 test pattern with heavy temporal noise (looped by the render), on the host."""
    work_dir.mkdir(parents=True, exist_ok=True)
    out = work_dir / name
    if not out.exists():
        subprocess.run([shutil.which("ffmpeg") or "ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                        f"testsrc2=s={WIDTH}x{HEIGHT}:r=25,noise=alls=40:allf=t+u", "-t", "2",
                        "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-pix_fmt", "yuv420p",
                        "-movflags", "+faststart", str(out)], check=True, timeout=timeout)
    return out


@dataclass
class Download:
    """One raw-socket download: small receive buffer, so the server really blocks when we stop reading."""

    sock: socket.socket
    status: int
    body: bytes  # the first body bytes (those that came with the head; a refusal's whole body)
    error_code: str | None = None
    received: int = 0  # body bytes received in all

    def __post_init__(self) -> None:
        self.received = len(self.body)

    def read(self, n: int) -> int:
        """Read up to ``n`` more body bytes (counted, not kept); returns bytes read (stops at reset / EOF)."""
        got = 0
        try:
            while got < n:
                data = self.sock.recv(min(65536, n - got))
                if not data:
                    break
                got += len(data)
        except (ConnectionResetError, BrokenPipeError, socket.timeout):
            pass
        self.received += got
        return got

    def abort(self, rst: bool) -> None:
        if rst:  # TCP RST, like a client killed mid-download
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


@dataclass(frozen=True)
class RawDownload:
    """Where and how to send one raw download: the API's host, the request path and headers
    (the adapter's ``download_request``), and how to read a refusal (the adapter's ``classify``)."""

    host: str
    path: str
    headers: dict[str, str]
    classify: Callable[[httpx.Response], ApiError | None]
    timeout: float

    def open(self, port: int, first_bytes: int = 256 * 1024) -> Download:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CLIENT_RCVBUF)
        sock.settimeout(self.timeout)
        sock.connect((self.host, port))
        head_lines = [f"GET {self.path} HTTP/1.1", f"Host: {self.host}:{port}",
                      *(f"{k}: {v}" for k, v in self.headers.items())]
        sock.sendall(("\r\n".join(head_lines) + "\r\n\r\n").encode())
        buf = b""
        try:
            while b"\r\n\r\n" not in buf:
                data = sock.recv(4096)
                if not data:
                    break
                buf += data
        except (ConnectionResetError, socket.timeout):
            pass
        if b"\r\n\r\n" not in buf:
            sock.close()
            return Download(sock, 0, b"")
        head, body = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = [(k.strip(), v.strip()) for k, _, v in (ln.partition(":") for ln in lines[1:])]
        d = Download(sock, status, body)
        if status == 200:
            d.read(max(0, first_bytes - len(body)))
            return d
        length = next((int(v) for k, v in headers if k.lower() == "content-length"), 0)
        while len(d.body) < length:
            data = sock.recv(length - len(d.body))
            if not data:
                break
            d.body += data
        d.received = len(d.body)
        error = self.classify(httpx.Response(status, headers=headers, content=d.body))
        d.error_code = error.code if error else None
        return d


@pytest.mark.stack(env=STACK_ENV)
@runs(S.CLIENT_DISCONNECT)
def test_aborted_downloads_leave_no_ffmpeg(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    api = run.target.container("api")
    assert run.tmp_dir is not None
    run.steady_state_before()

    # -- the video, rendered once: 20 s at 640x360, ~30 MB --------------------------------------
    asset = run.platform.place_asset(make_noise(run.tmp_dir, run.wait(NOISE)))
    try:
        answer = run.submit(title="download me", duration=VIDEO_S, width=WIDTH, height=HEIGHT, input=asset,
                            preset="ultrafast")  # ultrafast: big and quick
        job_id = run.accepted(answer, "the download video")
        try:
            job = run.ledger.wait_terminal(job_id, run.wait(RENDER), "the download video to render")
        except WaitTimeout as exc:
            run.fail(f"the download video renders within {exc.timeout:.0f}s", f"not finished; last: {exc.last}")
            raise
    finally:
        run.platform.remove_asset(asset)  # the render has read it (or is over)
    run.expect(job.state is JobState.COMPLETED, "the download video renders", brief(job))
    size = int(job.output_bytes or 0)
    run.expect(size >= MIN_OUTPUT_BYTES, f"output >= {MIN_OUTPUT_BYTES} bytes (larger than every buffer)",
               f"{size} bytes")
    api_url = urlsplit(run.platform.endpoint.api_url)
    assert api_url.hostname is not None and api_url.port is not None
    path, headers = run.platform.download_request(run.account, job_id)  # type: ignore[attr-defined]
    raw = RawDownload(api_url.hostname, path, headers, run.platform.classify, run.wait(SOCKET))

    def ffmpeg_count() -> int:
        return len(orphan_ffmpeg(api))

    def none_left() -> bool:
        return ffmpeg_count() == 0

    def zero_within_deadline(when: str) -> None:
        try:
            wait_for(none_left, f"no ffmpeg left in the API container {when}", ORPHAN_DEADLINE.seconds, Poll(0.1))
        except Exception:  # noqa: BLE001 - WaitTimeout: report what is left
            left = orphan_ffmpeg(api)
            run.fail(f"zero ffmpeg processes in the API container within {ORPHAN_DEADLINE} {when}",
                     f"{len(left)} left, e.g. {[p.args for p in left[:3]]}")

    # -- 1. the cap: CONCURRENT downloads held open, unread ----------------------------------------
    run.mark_injected(f"{CONCURRENT} downloads held open and unread, then aborted (client close / TCP RST)")
    held = [raw.open(api_url.port) for _ in range(CONCURRENT)]
    ok = [d for d in held if d.status == 200]
    busy = [d for d in held if d.status == 503 and d.error_code == "busy"]
    running = ffmpeg_count()
    if running:  # the symptom, first seen: remux ffmpeg blocked writing to a pipe no client reads
        run.detected()
    run.journal.notes.append(f"held {CONCURRENT}: {len(ok)} streaming, {len(busy)} busy, {running} ffmpeg")
    run.expect(len(ok) <= REMUX_CAP and running <= REMUX_CAP,
               f"at most REMUX_MAX_CONCURRENT={REMUX_CAP} remuxes at once (WEB_CONCURRENCY=1)",
               f"{len(ok)} downloads streaming, {running} ffmpeg processes in the API container")
    run.expect(len(ok) >= 1 and len(busy) == CONCURRENT - len(ok),
               "the downloads over the cap answered 503 busy",
               lambda: f"statuses {[(d.status, d.error_code) for d in held]}; API log: {api.logs(tail=30)}")
    for i, d in enumerate(held):
        d.abort(rst=bool(i % 2))
    aborted = len(ok)
    zero_within_deadline(f"after {aborted} held downloads were aborted")

    # -- 2. aborted one by one, in rounds within the cap: client close and TCP RST ------------------
    sizes = (0, 64 * 1024, 512 * 1024, 2 * 1024 * 1024)
    i = 0
    while aborted < ABORTS - VIA_TOXIC:
        batch = [raw.open(api_url.port, first_bytes=sizes[(i + j) % len(sizes)])
                 for j in range(min(REMUX_CAP, ABORTS - VIA_TOXIC - aborted))]
        bad = [(d.status, d.error_code) for d in batch if d.status != 200]
        run.expect(not bad, "every download within the cap streams (200)", f"{bad}")
        for j, d in enumerate(batch):
            d.abort(rst=bool((i + j) % 2))
        aborted += len(batch)
        i += len(batch)
        zero_within_deadline(f"after {aborted} aborted downloads")

    # -- 3. the network aborts them: reset_peer on a proxy route in front of the API ---------------
    route = run.inject(ExtraRoute.in_front_of(run.target, run.platform.endpoint.api_url, "api-download"))
    assert route.listen_port
    toxic = run.inject(RouteToxic(route.proxy_url, route.name, "reset_peer", attributes={"timeout": 300}))
    for _ in range(VIA_TOXIC):
        d = raw.open(route.listen_port, first_bytes=size)  # read until the reset
        run.expect(d.status in (0, 200), "the proxied download starts (or is reset before its head)",
                   f"{d.status} {d.error_code}")
        got = d.received
        d.abort(rst=False)
        run.expect(got < size, "the reset_peer toxic cuts the download mid-stream",
                   f"{got} of {size} bytes arrived")
        aborted += 1
    run.heal(toxic, "remove the reset_peer toxic")
    run.recovered(none_left, f"zero ffmpeg in the API container within {ORPHAN_DEADLINE} "
                  f"of {aborted} aborted downloads", timeout=ORPHAN_DEADLINE.seconds, poll=Poll(0.1))

    # -- 4. a complete download is a valid MP4 -------------------------------------------------------
    full = run.platform.download(run.account, job_id, timeout=run.wait(DOWNLOAD))
    run.expect(full.ok and full.value is not None, "a complete download (200)", str(full))
    assert full.value is not None
    try:
        info = probe_bytes(full.value, tmp_dir=run.tmp_dir)
    except ValueError as exc:
        run.fail("the complete download is a valid MP4 (ffprobe)", str(exc))
    run.expect(abs(info.duration - VIDEO_S) <= DURATION_SLACK_S and (info.width, info.height) == (WIDTH, HEIGHT)
               and info.video_codec == "h264",
               f"the download is {VIDEO_S:g}s {WIDTH}x{HEIGHT} h264", f"{info}")
    zero_within_deadline("after the complete download")
    run.steady_state_after()
