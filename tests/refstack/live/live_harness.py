"""The live pipeline as real processes: the platform, encoders and a publisher.

``LiveService``  ``python -m refstack.live`` on free 127.0.0.1 ports, data in a given dir
``Procs``        starts encoders (``python -m refstack.live.encoder --source-ip 127.0.0.x``)
                 and ffmpeg publishers; ``stop_all()`` kills and reaps every one
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from renderchaos.wait import Poll, wait_for

STARTUP_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0
ENCODER_IPS = ("127.0.0.2", "127.0.0.3")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(broken: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "REFSTACK_BROKEN"}
    if broken:
        env["REFSTACK_BROKEN"] = broken
    return env


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class LiveService:
    """The platform as a subprocess plus an admin client. Usable from a plain script."""

    def __init__(self, workdir: Path, broken: str | None = None, alert_after_s: float = 2.0) -> None:
        self.port, self.ingest_port, self.relay_port = free_port(), free_port(), free_port()
        self.data_dir = workdir / "live-data"
        self.log_path = workdir / "live.log"
        env = _env(broken) | {
            "LIVE_HOST": "127.0.0.1",
            "LIVE_PORT": str(self.port),
            "LIVE_INGEST_PORT": str(self.ingest_port),
            "LIVE_RELAY_PORT": str(self.relay_port),
            "LIVE_DATA_DIR": str(self.data_dir),
            "LIVE_ALERT_AFTER_S": str(alert_after_s),
        }
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "refstack.live"], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        self.api = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30.0)

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"live service exited {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            return self.api.get("/health").status_code == 200

        wait_for(ready, "live /health answers 200", STARTUP_TIMEOUT_S, Poll(0.05, (httpx.TransportError,)))

    # -- API helpers --
    def post(self, path: str, **body: object) -> dict:
        resp = self.api.post(path, json=body or None)
        assert resp.status_code == 200, f"POST {path} {body}: {resp.status_code} {resp.text}"
        return resp.json()

    def encoder(self, ip: str) -> dict | None:
        return next((e for e in self.api.get("/encoders").json() if e["ip"] == ip), None)

    def active_alert(self, ip: str) -> dict | None:
        return next((a for a in self.api.get("/alerts").json()["active"] if a["encoder"] == ip), None)

    def alert_metric(self, ip: str) -> float | None:
        for line in self.api.get("/metrics").text.splitlines():
            if line.startswith("refstack_live_alert_active{") and f'encoder="{ip}"' in line:
                return float(line.rsplit(" ", 1)[1])
        return None

    def receiving(self, ip: str, since_sessions: int = 0) -> dict | None:
        """The encoder's view once it is connected and getting data (in a new session)."""
        e = self.encoder(ip)
        if e and e["state"] == "connected" and e["sessions"] > since_sessions and (e["last_data_age_s"] or 9) < 1:
            return e
        return None

    def stop(self) -> None:
        self.api.close()
        _stop(self.proc)
        self._log.close()


class Procs:
    """Encoders and publishers for one test; every one killed and reaped at teardown."""

    def __init__(self, live: LiveService, workdir: Path) -> None:
        self.live = live
        self.workdir = workdir
        self.procs: list[subprocess.Popen] = []
        self._logs: list[object] = []

    def _spawn(self, argv: list[str], log_name: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        log = (self.workdir / log_name).open("ab")
        self._logs.append(log)
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def encoder(self, ip: str, stream: str = "live", broken: str | None = None) -> subprocess.Popen:
        return self._spawn(
            [sys.executable, "-m", "refstack.live.encoder", "--source-ip", ip,
             "--relay", f"127.0.0.1:{self.live.relay_port}", "--stream", stream,
             "--data-dir", str(self.live.data_dir)],
            f"encoder-{ip}.log", env=_env(broken),
        )

    def publisher(self, seconds: float, url: str | None = None, extra: tuple[str, ...] = ()) -> subprocess.Popen:
        """ffmpeg pushing ``seconds`` of 160x120 test video + tone, in real time."""
        return self._spawn(
            ["ffmpeg", "-nostdin", "-v", "error", "-re",
             "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25",
             "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=22050",
             "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
             "-g", "25", "-c:a", "aac", "-b:a", "32k", *extra,
             "-f", "mpegts", url or f"tcp://127.0.0.1:{self.live.ingest_port}"],
            "publisher.log",
        )

    def log(self, name: str) -> str:
        path = self.workdir / name
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            _stop(proc)
        for log in self._logs:
            log.close()
