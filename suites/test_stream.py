"""Streaming download scenarios (PeerTube runbook P): the remux pipe under client disconnects."""

from __future__ import annotations

import json
import shutil
import socket
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from renderchaos.faults.container import orphan_ffmpeg
from renderchaos.faults.network import RouteToxic
from renderchaos.probes.media import probe_bytes
from renderchaos.scenario import ScenarioRun, runs
from renderchaos.stack.routes import ExtraRoute
from renderchaos.wait import Poll, wait_for
from scenarios import stream as S

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
SOCKET_TIMEOUT_S = 10.0
RENDER_TIMEOUT_S = 180.0
DOWNLOAD_TIMEOUT_S = 120.0
ORPHAN_DEADLINE_S = 5.0  # SCENARIOS.md: zero ffmpeg processes remain within 5 s


def make_noise_asset(assets_dir: Path, name: str = "noise.mp4") -> str:
    """A 2 s 640x360 test pattern with heavy temporal noise (looped by the render)."""
    out = assets_dir / name
    if not out.exists():
        subprocess.run([shutil.which("ffmpeg") or "ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                        f"testsrc2=s={WIDTH}x{HEIGHT}:r=25,noise=alls=40:allf=t+u", "-t", "2",
                        "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-pix_fmt", "yuv420p",
                        "-movflags", "+faststart", str(out)], check=True, timeout=120)
        out.chmod(0o644)
    return name


@dataclass
class Download:
    """One raw-socket download: small receive buffer, so the server really blocks when we stop reading."""

    sock: socket.socket
    status: int
    body: bytes  # what we read of the body so far
    error_code: str | None = None

    def read(self, n: int) -> int:
        """Read up to ``n`` more body bytes; returns bytes read (stops at reset / EOF)."""
        got = 0
        try:
            while got < n:
                data = self.sock.recv(min(65536, n - got))
                if not data:
                    break
                got += len(data)
        except (ConnectionResetError, BrokenPipeError, socket.timeout):
            pass
        return got

    def abort(self, rst: bool) -> None:
        if rst:  # TCP RST, like a client killed mid-download
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def open_download(port: int, job_id: str, api_key: str, first_bytes: int = 256 * 1024) -> Download:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CLIENT_RCVBUF)
    sock.settimeout(SOCKET_TIMEOUT_S)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET /v1/videos/{job_id}/download HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                 f"Authorization: Bearer {api_key}\r\nUser-Agent: renderchaos\r\n\r\n".encode())
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
    d = Download(sock, status, body)
    if status == 200:
        d.read(max(0, first_bytes - len(body)))
        return d
    length = next((int(v) for k, _, v in (ln.partition(":") for ln in lines[1:])
                   if k.strip().lower() == "content-length"), 0)
    while len(d.body) < length:
        data = sock.recv(length - len(d.body))
        if not data:
            break
        d.body += data
    try:
        d.error_code = json.loads(d.body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        d.error_code = None
    return d


@pytest.mark.stack(env=STACK_ENV)
@runs(S.CLIENT_DISCONNECT)
def test_aborted_downloads_leave_no_ffmpeg(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    stack = run.target.stack
    assert stack is not None
    api = stack.api
    run.steady_state_before()

    # -- the video, rendered once: 30 s at 640x360, ~30 MB --------------------------------------
    asset = make_noise_asset(stack.assets_dir)
    data = {"title": "download me", "duration": VIDEO_S, "width": WIDTH, "height": HEIGHT,
            "colours": ["#112233", "white"], "price": 99, "preset": "ultrafast"}  # ultrafast: big and quick
    resp = run.submit(title="download me", duration=VIDEO_S, width=WIDTH, height=HEIGHT, input_asset=asset,
                      data=data)
    run.expect(resp.status_code == 202, "the download video accepted (202)", f"{resp.status_code} {resp.text[:200]}")
    job_id = resp.json()["id"]
    job = run.ledger.wait_terminal(job_id, RENDER_TIMEOUT_S, "the download video to render")
    run.expect(job["status"] == "completed", "the download video renders", f"{job['status']} {job.get('error_code')}")
    size = int(job.get("output_bytes") or (job.get("output") or {}).get("bytes") or 0)
    run.expect(size >= MIN_OUTPUT_BYTES, f"output >= {MIN_OUTPUT_BYTES} bytes (larger than every buffer)",
               f"{size} bytes")
    key = run.user.api_key

    def ffmpeg_count() -> int:
        return len(orphan_ffmpeg(api))

    def none_left() -> bool:
        return ffmpeg_count() == 0

    def zero_within_5s(when: str) -> None:
        try:
            wait_for(none_left, f"no ffmpeg left in the API container {when}", ORPHAN_DEADLINE_S, Poll(0.1))
        except Exception:  # noqa: BLE001 - WaitTimeout: report what is left
            left = orphan_ffmpeg(api)
            run.fail(f"zero ffmpeg processes in the API container within {ORPHAN_DEADLINE_S:.0f}s {when}",
                     f"{len(left)} left, e.g. {[p.args for p in left[:3]]}")

    # -- 1. the cap: CONCURRENT downloads held open, unread ----------------------------------------
    held = [open_download(api.port, job_id, key) for _ in range(CONCURRENT)]
    ok = [d for d in held if d.status == 200]
    busy = [d for d in held if d.status == 503 and d.error_code == "busy"]
    running = ffmpeg_count()
    run.detect(lambda: True, "concurrent remuxes measured while held open")
    run.journal.notes.append(f"held {CONCURRENT}: {len(ok)} streaming, {len(busy)} busy, {running} ffmpeg")
    run.expect(len(ok) <= REMUX_CAP and running <= REMUX_CAP,
               f"at most REMUX_MAX_CONCURRENT={REMUX_CAP} remuxes at once (WEB_CONCURRENCY=1)",
               f"{len(ok)} downloads streaming, {running} ffmpeg processes in the API container")
    run.expect(len(ok) >= 1 and len(busy) == CONCURRENT - len(ok),
               f"the downloads over the cap answered 503 busy",
               lambda: f"statuses {[(d.status, d.error_code) for d in held]}; API log: {api.logs(tail=30)}")
    for i, d in enumerate(held):
        d.abort(rst=bool(i % 2))
    aborted = len(ok)
    zero_within_5s(f"after {aborted} held downloads were aborted")

    # -- 2. aborted one by one, in rounds within the cap: client close and TCP RST ------------------
    sizes = (0, 64 * 1024, 512 * 1024, 2 * 1024 * 1024)
    i = 0
    while aborted < ABORTS - VIA_TOXIC:
        batch = [open_download(api.port, job_id, key, first_bytes=sizes[(i + j) % len(sizes)])
                 for j in range(min(REMUX_CAP, ABORTS - VIA_TOXIC - aborted))]
        bad = [(d.status, d.error_code) for d in batch if d.status != 200]
        run.expect(not bad, "every download within the cap streams (200)", f"{bad}")
        for j, d in enumerate(batch):
            d.abort(rst=bool((i + j) % 2))
        aborted += len(batch)
        i += len(batch)
        zero_within_5s(f"after {aborted} aborted downloads")

    # -- 3. the network aborts them: reset_peer on a proxy route in front of the API ---------------
    route = run.inject(ExtraRoute(stack.proxy_url, f"{stack.ctx.stack_id}-api-download", api.port))
    assert route.listen_port
    toxic = run.inject(RouteToxic(stack.proxy_url, route.name, "reset_peer", attributes={"timeout": 300}))
    for _ in range(VIA_TOXIC):
        d = open_download(route.listen_port, job_id, key, first_bytes=size)  # read until the reset
        run.expect(d.status in (0, 200), "the proxied download starts (or is reset before its head)",
                   f"{d.status} {d.error_code}")
        got = len(d.body)
        d.abort(rst=False)
        run.expect(got < size, "the reset_peer toxic cuts the download mid-stream",
                   f"{got} of {size} bytes arrived")
        aborted += 1
    run.heal(toxic, "remove the reset_peer toxic")
    run.recovered(none_left, f"zero ffmpeg in the API container within {ORPHAN_DEADLINE_S:.0f}s "
                  f"of {aborted} aborted downloads", timeout=ORPHAN_DEADLINE_S, poll=Poll(0.1))

    # -- 4. a complete download is a valid MP4 -------------------------------------------------------
    full = run.api.download(job_id, timeout=DOWNLOAD_TIMEOUT_S)
    run.expect(full.status_code == 200, "a complete download (200)", f"{full.status_code} {full.text[:200]}")
    try:
        info = probe_bytes(full.content, tmp_dir=run.tmp_dir)
    except ValueError as exc:
        run.fail("the complete download is a valid MP4 (ffprobe)", str(exc))
    run.expect(abs(info.duration - VIDEO_S) <= 0.5 and (info.width, info.height) == (WIDTH, HEIGHT)
               and info.video_codec == "h264",
               f"the download is {VIDEO_S:g}s {WIDTH}x{HEIGHT} h264", f"{info}")
    zero_within_5s("after the complete download")
    run.steady_state_after()
