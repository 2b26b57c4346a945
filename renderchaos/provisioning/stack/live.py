"""Processes around the live recorder (AVideo runbook V), as containers of the stack.

``LivePublisher``  ffmpeg pushing a test pattern as MPEG-TS, in real time, to the live ingest
                   (``POST /live/<stream>`` on ``stack.live_ingest_port``), like OBS would.
``LiveEncoder``    one encoder of the "encoder cluster": ``python -m refstack.live.encoder`` from its
                   own loopback address (host networking makes 127.0.0.x usable), recording into the
                   live service's data dir (shared: ``stack.live_data_dir`` at /data/live).

Both are :class:`~renderchaos.provisioning.stack.services.AppService` subclasses created with the stack's
context, so they are labelled and reaped with it; callers ``remove()`` them when done.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from renderchaos.provisioning.stack.services import AppService, Readiness
from renderchaos.wait import Poll

if TYPE_CHECKING:
    from renderchaos.provisioning.stack.stack import Stack

LIVE_DATA_MOUNT = "/data/live"


def _running(service: AppService) -> Readiness:
    return Readiness("container running", lambda: service.state().get("Running") is True, Poll(0.1))


class LivePublisher(AppService):
    """``seconds`` of 320x180 test video + tone, pushed in real time to ``POST /live/<stream>``."""

    def __init__(self, stack: "Stack", stream: str, seconds: float) -> None:
        self.name = f"live-publisher-{stream}"
        super().__init__(stack.ctx, stack.config.images["app"])
        self.stream, self.seconds = stream, seconds
        self.url = f"http://{stack.ctx.host}:{stack.live_ingest_port}/live/{stream}"

    def command(self) -> list[str]:
        return ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-re",
                "-f", "lavfi", "-i", "testsrc=size=320x180:rate=25",
                "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=22050",
                "-t", f"{self.seconds:g}", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
                "-g", "25", "-c:a", "aac", "-b:a", "32k", "-f", "mpegts", "-method", "POST", self.url]

    def readiness(self) -> Readiness:
        return _running(self)

    def exit_code(self) -> int | None:
        st = self.state()
        return None if st.get("Running") else st.get("ExitCode")


class LiveEncoder(AppService):
    """An encoder connecting to the relay from ``source_ip``; REFSTACK_BROKEN as the stack's."""

    def __init__(self, stack: "Stack", source_ip: str, stream: str) -> None:
        self.name = f"live-encoder-{source_ip.replace('.', '-')}-{stream}"
        super().__init__(stack.ctx, stack.config.images["app"],
                         env={"REFSTACK_BROKEN": ",".join(stack.config.broken), "HOME": "/tmp"},
                         volumes={str(stack.live_data_dir): {"bind": LIVE_DATA_MOUNT, "mode": "rw"}})
        self.source_ip, self.stream = source_ip, stream
        self.relay = f"{stack.ctx.host}:{stack.live_relay_port}"

    def command(self) -> list[str]:
        return ["python", "-m", "refstack.live.encoder", "--source-ip", self.source_ip, "--relay", self.relay,
                "--stream", self.stream, "--data-dir", LIVE_DATA_MOUNT]

    def readiness(self) -> Readiness:
        return _running(self)


class LiveAdmin:
    """The live service's admin API (the target's ``live`` URL: ``platform.endpoint.urls["live"]``),
    as the scenarios read it."""

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        import httpx

        self.http = httpx.Client(base_url=base_url, timeout=timeout, headers={"User-Agent": "renderchaos"})

    def close(self) -> None:
        self.http.close()

    def encoder(self, ip: str) -> dict | None:
        return next((e for e in self.http.get("/encoders").json() if e["ip"] == ip), None)

    def active_alert(self, ip: str) -> dict | None:
        return next((a for a in self.http.get("/alerts").json()["active"] if a["encoder"] == ip), None)

    def alert_history(self, ip: str) -> list[dict]:
        return [a for a in self.http.get("/alerts").json()["history"] if a["encoder"] == ip]

    def receiving(self, ip: str, since_sessions: int = 0) -> dict | None:
        """The encoder's view once it is connected and getting fresh data, in a session after ``since_sessions``."""
        e = self.encoder(ip)
        if e and e["state"] == "connected" and e["sessions"] > since_sessions and (e["last_data_age_s"] or 9) < 1:
            return e
        return None

    def stream(self, name: str) -> dict | None:
        resp = self.http.get(f"/streams/{name}")
        return resp.json() if resp.status_code == 200 else None

    def post(self, path: str) -> tuple[int, dict]:
        resp = self.http.post(path)
        try:
            body = resp.json()
        except ValueError:
            body = {"text": resp.text[:300]}
        return resp.status_code, body

    def build_recording(self, name: str, action: str = "finalize") -> tuple[int, dict]:
        """Build the stream's final recording: ``finalize`` (encoder sessions, holes filled from the
        local backup) or ``rerecord`` (the admin's forced re-record from the backup). (status, report)."""
        if action not in ("finalize", "rerecord"):
            raise ValueError(f"action is finalize or rerecord, not {action!r}")
        return self.post(f"/streams/{name}/{action}")

    def coverage(self, name: str) -> dict:
        """What each encoder's own sessions cover of the stream (``encoders``: ip -> gaps, max_gap_s)."""
        resp = self.http.get(f"/streams/{name}/coverage")
        resp.raise_for_status()
        return resp.json()

    def recording_file(self, name: str) -> bytes | None:
        resp = self.http.get(f"/streams/{name}/recording/file")
        return resp.content if resp.status_code == 200 else None
