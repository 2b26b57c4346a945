"""Live recording against the AVideo encoder-blacklist runbook.

Scenario rows live.encoder_blacklisted and live.encoder_restart, with real ffmpeg, real TCP
and encoders connecting from 127.0.0.2 / 127.0.0.3. Each planted bug is caught here.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from renderchaos.errors import WaitTimeout
from renderchaos.wait import Poll, wait_for

from live_harness import LiveService, Procs

ENC, OTHER = "127.0.0.2", "127.0.0.3"
#: The runbook bar: alert within this, and no gap in the final recording longer than this.
ALERT_WINDOW_S = 10.0
#: Stricter bar for our own stack: the backup must fill the encoder's hole almost exactly.
MAX_FILLED_GAP_S = 1.0
CONNECT_TIMEOUT_S = 10.0
CUT_TIMEOUT_S = 3.0
RESUME_TIMEOUT_S = 5.0  # encoder reconnect backoff is capped at 1 s
CLEAR_TIMEOUT_S = 3.0
HOLD_FAULT_S = 2.0  # scenario step: keep the fault on this long after the alert
STREAM_S = 16  # seconds of content pushed (real time)
POLL = Poll(0.1)


@dataclass
class Observed:
    alert_latency_s: float | None = None
    alert_metric: float | None = None
    resumed_after_s: float | None = None
    alert_cleared: bool = False
    report: dict | None = None


def _maybe(check, what: str, timeout: float) -> object | None:
    try:
        return wait_for(check, what, timeout, POLL)
    except WaitTimeout:
        return None


def start_stream(live: LiveService, procs: Procs, ips: tuple[str, ...] = (ENC,), broken: str | None = None,
                 seconds: int = STREAM_S) -> subprocess.Popen:
    for ip in ips:
        procs.encoder(ip, broken=broken)
    pub = procs.publisher(seconds)
    for ip in ips:
        wait_for(lambda ip=ip: live.receiving(ip), f"encoder {ip} connected and receiving", CONNECT_TIMEOUT_S, POLL)
    return pub


def lose_and_recover(live: LiveService, lose, remedy) -> Observed:
    """Encoder ENC loses the stream (``lose()``), then ``remedy()``; observe alert and resume."""
    obs = Observed()
    sessions = live.encoder(ENC)["sessions"]
    t0 = time.monotonic()
    lose()
    if _maybe(lambda: live.active_alert(ENC), f"encoder_unreachable for {ENC}", ALERT_WINDOW_S):
        obs.alert_latency_s = time.monotonic() - t0
        obs.alert_metric = live.alert_metric(ENC)
    time.sleep(HOLD_FAULT_S)  # scenario step: the fault lasts a while after the alert
    t1 = time.monotonic()
    remedy()
    if _maybe(lambda: live.receiving(ENC, since_sessions=sessions), f"{ENC} receiving again", RESUME_TIMEOUT_S):
        obs.resumed_after_s = time.monotonic() - t1
        obs.alert_cleared = bool(_maybe(lambda: live.active_alert(ENC) is None, "alert cleared", CLEAR_TIMEOUT_S))
    return obs


def finish(live: LiveService, pub: subprocess.Popen) -> dict:
    wait_for(lambda: pub.poll() is not None, "publisher finished", STREAM_S + 15, POLL)
    assert pub.returncode == 0, f"publisher failed with {pub.returncode}"
    wait_for(lambda: not live.api.get("/streams/live").json()["live"], "stream marked ended", 5, POLL)
    return live.post("/streams/live/finalize")


def probe_gaps(path: Path) -> tuple[float, float, float]:
    """Independent check of a recording: (first, last, largest gap) of its video packets."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time",
         "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    times = sorted(float(x.strip().rstrip(",")) for x in out.splitlines() if x.strip().rstrip(",") not in ("", "N/A"))
    assert times, f"ffprobe found no video packets in {path}"
    return times[0], times[-1], max((b - a for a, b in zip(times, times[1:])), default=0.0)


def download(live: LiveService, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    resp = live.api.get("/streams/live/recording/file")
    assert resp.status_code == 200, resp.text
    path.write_bytes(resp.content)
    return path


def assert_covers(report: dict, final_file: Path, max_gap: float) -> None:
    extent = report["stream_extent"]
    first, last, gap = probe_gaps(final_file)
    assert report["covers_stream"], report["final"]
    assert gap <= max_gap, f"final recording has a {gap:.2f}s hole (bar {max_gap}s): {report['final']['gaps']}"
    assert first <= extent["start"] + 0.1 and last >= extent["end"] - 0.1, (first, last, extent)
    assert last - first >= STREAM_S - 1.5, f"final covers {last - first:.1f}s of a {STREAM_S}s stream"


# ---- live.encoder_blacklisted --------------------------------------------------------------


def blacklist_scenario(live: LiveService, procs: Procs, encoder_broken: str | None = None) -> Observed:
    pub = start_stream(live, procs, broken=encoder_broken)
    obs = lose_and_recover(
        live,
        lose=lambda: live.post("/blocklist", ip=ENC),
        remedy=lambda: live.post("/allowlist", ip=ENC),  # runbook remedy: allowlist the encoder
    )
    obs.report = finish(live, pub)
    return obs


def test_blocked_encoder_alerts_then_allowlist_resumes_and_final_covers(live, procs_factory, tmp_path) -> None:
    procs = procs_factory(live)
    obs = blacklist_scenario(live, procs)
    assert obs.alert_latency_s is not None and obs.alert_latency_s <= ALERT_WINDOW_S
    assert obs.alert_metric == 1.0, "the alert must be visible on /metrics while active"
    assert obs.resumed_after_s is not None, f"encoder never came back: {procs.log(f'encoder-{ENC}.log')}"
    assert obs.alert_cleared and live.alert_metric(ENC) == 0.0
    history = live.api.get("/alerts").json()["history"]
    assert [(a["encoder"], a["reason"]) for a in history] == [(ENC, "blocked")]
    report = obs.report
    # The encoder really missed part of the stream, the backup filled it, and ffprobe agrees.
    assert report["encoder"]["max_gap_s"] >= HOLD_FAULT_S, report["encoder"]
    assert report["filled_from_backup"], report
    assert report["final"]["max_gap_s"] <= MAX_FILLED_GAP_S, report["final"]["gaps"]
    assert_covers(report, download(live, tmp_path, "final.ts"), MAX_FILLED_GAP_S)


def test_broken_no_alert_is_caught(live_factory, procs_factory) -> None:
    live = live_factory("live_no_alert")
    obs = blacklist_scenario(live, procs_factory(live))
    assert obs.alert_latency_s is None, "the planted bug still raised the alert"


def test_broken_no_backup_recording_is_caught(live_factory, procs_factory) -> None:
    live = live_factory("live_no_backup_recording")
    obs = blacklist_scenario(live, procs_factory(live))
    assert obs.report["backup"] is None
    assert obs.report["final"]["max_gap_s"] > MAX_FILLED_GAP_S, "the planted bug left no hole in the recording"


def test_broken_no_reconnect_is_caught(live, procs_factory) -> None:
    procs = procs_factory(live)
    pub = start_stream(live, procs, broken="live_no_reconnect")
    obs = lose_and_recover(live, lambda: live.post("/blocklist", ip=ENC), lambda: live.post("/allowlist", ip=ENC))
    pub.kill()
    assert obs.resumed_after_s is None, "the planted bug still reconnected"


def allowlist_wins_scenario(live: LiveService, procs: Procs) -> dict:
    live.post("/allowlist", ip=ENC)  # the runbook remedy, in place before the bad change
    pub = start_stream(live, procs, ips=(ENC, OTHER), seconds=10)
    before = live.encoder(ENC)
    answer = live.post("/blocklist", ip="127.0.0.0/24")  # a careless block of the whole range
    other_blocked = _maybe(lambda: live.encoder(OTHER)["state"] == "blocked", f"{OTHER} blocked", CUT_TIMEOUT_S)
    other_alert = _maybe(lambda: live.active_alert(OTHER), f"alert for {OTHER}", ALERT_WINDOW_S)
    time.sleep(HOLD_FAULT_S)  # scenario step: the block stays in place
    after = live.encoder(ENC)
    pub.kill()
    return {"answer": answer, "before": before, "after": after, "other_blocked": other_blocked,
            "other_alert": other_alert, "enc_alert": live.active_alert(ENC)}


def test_allowlisted_encoder_cannot_be_blocked(live, procs_factory) -> None:
    seen = allowlist_wins_scenario(live, procs_factory(live))
    assert seen["answer"]["not_blocked_because_allowlisted"] == [ENC]
    assert seen["answer"]["cut"] == [OTHER]
    after, before = seen["after"], seen["before"]
    assert after["state"] == "connected" and after["sessions"] == before["sessions"], after
    assert after["bytes_out"] > before["bytes_out"] and after["refused"] == 0
    assert seen["enc_alert"] is None
    assert seen["other_blocked"] and seen["other_alert"], "the non-allowlisted encoder must be blocked and alerted"


def test_broken_blocklist_beats_allowlist_is_caught(live_factory, procs_factory) -> None:
    live = live_factory("live_blocklist_beats_allowlist")
    seen = allowlist_wins_scenario(live, procs_factory(live))
    assert seen["after"]["state"] != "connected" or seen["after"]["sessions"] > seen["before"]["sessions"]


# ---- live.encoder_restart ------------------------------------------------------------------


def test_encoder_restart_resumes_and_admin_can_rerecord(live, procs_factory, tmp_path) -> None:
    procs = procs_factory(live)
    pub = start_stream(live, procs)
    victim = procs.procs[0]
    restarted: list[subprocess.Popen] = []

    def kill() -> None:
        victim.kill()  # the encoder process dies mid-stream
        victim.wait()

    obs = lose_and_recover(live, lose=kill, remedy=lambda: restarted.append(procs.encoder(ENC)))
    assert obs.alert_latency_s is not None and obs.alert_latency_s <= ALERT_WINDOW_S
    assert obs.resumed_after_s is not None and obs.alert_cleared
    assert live.api.get("/alerts").json()["history"][0]["reason"] == "unreachable"

    report = finish(live, pub)
    assert report["source"] == "encoder+backup" and report["filled_from_backup"]
    assert_covers(report, download(live, tmp_path, "final.ts"), MAX_FILLED_GAP_S)

    rerecord = live.post("/streams/live/rerecord")  # admin: force re-record from the backup
    assert rerecord["source"] == "backup" and rerecord["final"]["gaps"] == []
    assert_covers(rerecord, download(live, tmp_path, "rerecord.ts"), MAX_FILLED_GAP_S)
    assert live.api.get("/streams/live/recording").json()["source"] == "backup"


# ---- API details ---------------------------------------------------------------------------


def test_access_lists_and_status_api(live) -> None:
    assert live.api.post("/blocklist", json={"ip": "not-an-ip"}).status_code == 400
    live.post("/blocklist", ip="127.0.0.0/30")
    live.post("/allowlist", ip="127.0.0.2")
    live.post("/encoders", ip=OTHER)  # expected encoder, monitored before it connects
    status = live.api.get("/status").json()
    assert status["access"]["blocklist"] == ["127.0.0.0/30"]
    assert status["access"]["effective_blocked_encoders"] == [OTHER]
    assert {e["ip"]: e["state"] for e in status["encoders"]} == {OTHER: "blocked"}
    assert live.api.delete("/blocklist/127.0.0.0/30").status_code == 200
    assert live.encoder(OTHER)["state"] == "disconnected"
    assert live.api.post("/streams/live/rerecord").status_code == 409  # nothing recorded yet
    assert live.api.get("/streams/nope").status_code == 404


def test_named_stream_over_http_post(live, procs_factory, tmp_path) -> None:
    procs = procs_factory(live)
    procs.encoder(ENC, stream="show1")
    pub = procs.publisher(4, url=f"http://127.0.0.1:{live.ingest_port}/live/show1", extra=("-method", "POST"))
    wait_for(lambda: live.receiving(ENC), f"{ENC} receiving show1", CONNECT_TIMEOUT_S, POLL)
    wait_for(lambda: pub.poll() is not None, "publisher finished", 20, POLL)
    wait_for(lambda: not live.api.get("/streams/show1").json()["live"], "show1 ended", 5, POLL)
    cov = live.api.get("/streams/show1/coverage").json()
    assert cov["backup"]["gaps"] == [] and cov["encoders"][ENC]["gaps"] == [], cov
    report = live.post("/streams/show1/finalize")
    assert report["final"]["max_gap_s"] == 0.0 and report["filled_from_backup"] == []
    assert report["final"]["end"] - report["final"]["start"] >= 3.0
