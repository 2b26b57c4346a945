"""Live recording scenarios (AVideo runbook V).

The live service is the platform's (its admin API at the target's ``live`` URL: encoders, alerts,
access lists, streams, recordings). The publisher and the encoders are containers the scenario
starts from the reference stack's image (renderchaos.provisioning.stack.live), so these scenarios need the
reference stack.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from contextlib import ExitStack, contextmanager
from typing import Any, Callable, Iterator

from renderchaos.errors import WaitTimeout
from renderchaos.faults.container import Killed, kill
from renderchaos.faults.iplist import Allowlisted, Blocklisted, live_url
from renderchaos.scenario import ScenarioRun, runs
from renderchaos.provisioning.stack.live import LiveAdmin, LiveEncoder, LivePublisher
from renderchaos.provisioning.stack.services import AppService
from renderchaos.wait import Deadline, Limit, Poll, Wait, wait_for
from scenarios import live as L

STREAM_MAX_S = 120.0  # the publisher pushes at most this long, in real time; stopped (SIGINT) when done
AFTER_RECOVERY_S = 4.0  # scenario step: keep streaming this long after the encoder is back
#: scenario step: the publisher pushes at least this long before it is stopped, so the recording
#: spans MIN_STREAM whatever the alert and recovery took (ffmpeg's first packet comes ~1.5 s in)
MIN_PUBLISH_S = 14.0
HOLD_FAULT_S = 3.0  # scenario step: the fault stays this long after the alert
#: a recording shorter than this is not a test of anything
MIN_STREAM = Limit(10.0, "scenario: the recording must span at least this much of the stream")
#: runbook bar: alert within, and no gap in the final recording longer than, this (SCENARIOS.md)
ALERT_WINDOW = Limit(10.0, "V 监控机制加强 / SCENARIOS.md: encoder_unreachable within 10 s")
#: the extent of the recording matches the stream's to within a GOP and a half
EXTENT_SLACK_S = 0.5
CONNECT = Wait(20.0, "containers start, the encoder connects and gets data")
END_GRACE = Wait(30.0, "the publisher finishes once stopped")
STREAM_ENDED = Wait(10.0, "the live service marks the stream ended")
ALERT_CLEARED = Wait(5.0, "the alert clears once the encoder records again")
PROBE = Wait(60.0, "ffprobe of a recording")
POLL = Poll(0.2)


class EncoderKilled(Killed):
    """SIGKILL the encoder container; healing a container already removed (test failed) does nothing."""

    def heal(self) -> None:
        try:
            self.service.state()
        except Exception:  # noqa: BLE001 - removed by containers() on the way out
            return
        super().heal()


@contextmanager
def containers(*services: AppService) -> Iterator[None]:
    """Start the services now; remove them on the way out, whatever happens."""
    try:
        for s in services:
            s.start()
        yield
    finally:
        for s in services:
            s.remove()


def probe_gaps(data: bytes, timeout: float) -> tuple[float, float, float]:
    """Independent ffprobe of a recording: (first, last, largest hole) of its video packets."""
    with tempfile.NamedTemporaryFile(prefix="renderchaos-live-", suffix=".ts") as f:
        f.write(data)
        f.flush()
        out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                              "packet=pts_time", "-of", "csv=p=0", f.name],
                             capture_output=True, text=True, timeout=timeout, check=False).stdout
    times = sorted(float(x.strip().rstrip(",")) for x in out.splitlines()
                   if x.strip().rstrip(",") not in ("", "N/A"))
    if not times:
        return 0.0, 0.0, float("inf")
    return times[0], times[-1], max((b - a for a, b in zip(times, times[1:])), default=0.0)


def finish_and_check_recording(run: ScenarioRun, live: LiveAdmin, pub: LivePublisher, stream: str,
                               published_at: float, action: str = "finalize") -> dict:
    """Publisher done (it started at monotonic ``published_at``), stream ended, then ``finalize``
    (or ``rerecord``): the recording covers the whole stream with no hole longer than the alert
    window (the report and our own ffprobe)."""
    if pub.exit_code() is None:
        more = max(AFTER_RECOVERY_S, MIN_PUBLISH_S - (time.monotonic() - published_at))
        hold(run, lambda: pub.exit_code() is not None, "publisher exit", more)
        kill(pub, "SIGINT")  # the show ends: ffmpeg closes the stream cleanly
    wait_for(lambda: pub.exit_code() is not None, "the publisher to finish", run.wait(END_GRACE), POLL)
    run.expect(pub.exit_code() in (0, 255), "the publisher pushes the stream until it is stopped",
               f"exit {pub.exit_code()}: {pub.logs()}")
    wait_for(lambda: not (live.stream(stream) or {}).get("live", True), f"stream {stream} marked ended",
             run.wait(STREAM_ENDED), POLL)
    status, report = live.build_recording(stream, action)
    run.expect(status == 200, f"the live service builds the final recording of {stream} ({action})",
               f"{status} {report}")
    data = live.recording_file(stream) or b""
    extent = report.get("stream_extent") or {}
    first, last, hole = probe_gaps(data, run.wait(PROBE))
    window = ALERT_WINDOW.seconds
    run.expect(report.get("covers_stream") is True and report["final"]["max_gap_s"] <= window
               and hole <= window and last - first >= MIN_STREAM.seconds
               and first <= extent.get("start", 0) + EXTENT_SLACK_S and last >= extent.get("end", 0) - EXTENT_SLACK_S,
               f"the {action}d recording covers the stream ({extent}) with no gap > {window:g} s "
               "(report and ffprobe)",
               f"report covers_stream={report.get('covers_stream')} gaps={report.get('final', {}).get('gaps')}; "
               f"ffprobe {first:.2f}..{last:.2f}s, largest hole {hole:.2f}s, backup={report.get('backup') is not None}")
    return report


def wait_receiving(run: ScenarioRun, live: LiveAdmin, ip: str, since: int = 0) -> dict:
    try:
        return wait_for(lambda: live.receiving(ip, since), f"encoder {ip} connected and receiving",
                        run.wait(CONNECT), POLL)
    except WaitTimeout as exc:
        run.fail(f"encoder {ip} receives the stream before the fault", str(exc.last))
        raise


def hold(run: ScenarioRun, check: Callable[[], Any], what: str, seconds: float) -> None:
    """Scenario step: keep the fault ``seconds`` long, failing if ``check`` turns true meanwhile."""
    try:
        wait_for(check, what, Deadline.after(seconds), POLL)
    except WaitTimeout:
        return
    run.fail(f"no {what} while the fault lasts", f"{what} seen")


@contextmanager
def listed(entry: Allowlisted) -> Iterator[Allowlisted]:
    """An access-list entry that is set-up or the remedy, not the fault: put now, taken off on the
    way out whatever happens (so it never leaks into the next scenario)."""
    entry.inject()
    try:
        yield entry
    finally:
        entry.heal()


@runs(L.ENCODER_BLACKLISTED)
def test_blocklisted_encoder(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    stack = run.target.stack
    assert stack is not None  # needs reference_stack: the encoders and publisher are its containers
    enc_ip, kept_ip, stream = "127.0.0.2", "127.0.0.3", "blacklisted"
    live = LiveAdmin(live_url(run.target))
    enc, kept = LiveEncoder(stack, enc_ip, stream), LiveEncoder(stack, kept_ip, stream)
    pub = LivePublisher(stack, stream, STREAM_MAX_S)
    run.steady_state_before()
    try:
        with ExitStack() as lists:
            lists.enter_context(listed(Allowlisted.of(run.target, kept_ip)))  # the runbook remedy, done for one encoder
            with containers(enc, kept, pub):
                published_at = time.monotonic()
                e0, k0 = wait_receiving(run, live, enc_ip), wait_receiving(run, live, kept_ip)
                backup0 = (live.stream(stream) or {}).get("backup_bytes", 0)
                # the fault: a careless block of the encoders' range
                block = run.inject(Blocklisted.of(run.target, "127.0.0.2/31"))
                run.expect(block.answer.get("not_blocked_because_allowlisted") == [kept_ip]
                           and block.answer.get("cut") == [enc_ip],
                           f"the block cuts {enc_ip} only; {kept_ip} is allowlisted (allowlist wins)",
                           f"cut={block.answer.get('cut')} "
                           f"protected={block.answer.get('not_blocked_because_allowlisted')}")
                alert = run.detect(lambda: live.active_alert(enc_ip), f"encoder_unreachable alert for {enc_ip}",
                                   timeout=ALERT_WINDOW.seconds)
                run.expect(alert["name"] == "encoder_unreachable", "alert encoder_unreachable", f"{alert}")
                hold(run, lambda: live.receiving(enc_ip, e0["sessions"]), f"{enc_ip} receiving while blocked",
                     HOLD_FAULT_S)
                k1 = live.encoder(kept_ip) or {}
                run.expect(k1.get("state") == "connected" and k1.get("sessions") == k0["sessions"]
                           and k1.get("bytes_out", 0) > k0["bytes_out"] and live.active_alert(kept_ip) is None,
                           f"allowlisted {kept_ip} keeps its session and its data through the block, no alert",
                           f"before {k0}, after {k1}")
                st = live.stream(stream) or {}
                run.expect(st.get("backup_bytes", 0) > backup0 and st.get("recording", {}).get("backup"),
                           "the platform keeps a local backup recording while the encoder is blocked",
                           f"backup_bytes {backup0} -> {st.get('backup_bytes')}, "
                           f"files {st.get('recording', {}).get('backup')}")
                run.remedy(lambda: lists.enter_context(listed(Allowlisted.of(run.target, enc_ip))),
                           f"put the encoder IP {enc_ip} on the allowlist")
                run.recovered(lambda: live.receiving(enc_ip, e0["sessions"]), f"{enc_ip} recording again")
                run.recovered(lambda: live.active_alert(enc_ip) is None, "the alert cleared", timeout=ALERT_CLEARED)
                finish_and_check_recording(run, live, pub, stream, published_at)
                own = live.coverage(stream)["encoders"].get(enc_ip) or {}
                run.expect(own.get("max_gap_s", 0) >= HOLD_FAULT_S,
                           f"{enc_ip} really missed part of the stream (its own sessions have the hole)",
                           f"{enc_ip} coverage gaps {own.get('gaps')}")
    finally:
        live.close()
    run.steady_state_after()


@runs(L.ENCODER_RESTART)
def test_encoder_restart(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    stack = run.target.stack
    assert stack is not None  # needs reference_stack: the encoder and publisher are its containers
    enc_ip, stream = "127.0.0.4", "restart"
    live = LiveAdmin(live_url(run.target))
    enc = LiveEncoder(stack, enc_ip, stream)
    pub = LivePublisher(stack, stream, STREAM_MAX_S)
    run.steady_state_before()
    try:
        with containers(enc, pub):
            published_at = time.monotonic()
            e0 = wait_receiving(run, live, enc_ip)
            dead = run.inject(EncoderKilled(enc, ready_timeout=run.wait(CONNECT)))
            alert = run.detect(lambda: live.active_alert(enc_ip), f"encoder_unreachable alert for {enc_ip}",
                               timeout=ALERT_WINDOW.seconds)
            run.expect(alert["name"] == "encoder_unreachable", "alert encoder_unreachable", f"{alert}")
            hold(run, lambda: live.receiving(enc_ip, e0["sessions"]), f"{enc_ip} receiving while dead",
                 HOLD_FAULT_S)
            run.heal(dead, "restart the encoder")
            run.recovered(lambda: live.receiving(enc_ip, e0["sessions"]), f"{enc_ip} recording again")
            run.recovered(lambda: live.active_alert(enc_ip) is None, "the alert cleared", timeout=ALERT_CLEARED)
            report = finish_and_check_recording(run, live, pub, stream, published_at)
            run.expect(report["source"] == "encoder+backup",
                       "the final recording is the encoder's, holes filled from the backup", f"{report['source']}")
            # admin manual intervention: force a re-record from the local backup
            rerecord = finish_and_check_recording(run, live, pub, stream, published_at, action="rerecord")
            run.expect(rerecord["source"] == "backup" and rerecord["final"]["gaps"] == [],
                       "the forced re-record is built from the backup, without gaps",
                       f"source {rerecord['source']}, gaps {rerecord['final']['gaps']}")
    finally:
        live.close()
    run.steady_state_after()
