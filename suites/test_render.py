"""Render pipeline scenarios (R §一)."""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any, Iterator

import pytest

from renderchaos.errors import WaitTimeout
from renderchaos.faults.container import Frozen, oom_kills, processes
from renderchaos.faults.media import PlacedAsset, corpus, missing_asset
from renderchaos.faults.process import ProcessStopped
from renderchaos.faults.storage import StorageFilled
from renderchaos.probes.api import render_body
from renderchaos.probes.ledger import TERMINAL
from renderchaos.scenario import ScenarioRun, runs
from renderchaos.wait import Deadline, Poll, wait_for
from scenarios import render as R

#: ffprobe gate verdicts must come "within seconds" (SCENARIOS.md render.input_corrupt): the
#: time from a worker picking the job up to its terminal state.
GATE_VERDICT_S = 10.0
#: Representative subset of the corrupt corpus for the gate (the full corpus is a resilience run).
GATE_CORRUPT = ("zero_bytes", "garbage_random_64k", "html_error_page_as_mp4", "truncated_in_moov",
                "moov_missing", "unsupported_fourcc", "absurd_dimensions_8x8", "wav_as_mp4_for_video")
GATE_DAMAGED = ("payload_bitflip_light", "truncated_mdat_50pct")


# ------------------------------------------------------------------------------- helpers
def _submit(run: ScenarioRun, preset: str | None = None, **body: Any) -> Any:
    """run.submit, but retried (bounded) while the per-key rate limit answers 429, and with an
    optional x264 preset in ``data``."""
    def once() -> Any:
        if preset is None:
            resp = run.submit(**body)
        else:
            req = render_body(**body)
            req["data"]["preset"] = preset
            resp = run.api.submit(req)
            d = req["data"]
            run.ledger.accept(resp, run.api, (float(d["duration"]), int(d["width"]), int(d["height"])))
        return None if resp.status_code == 429 else resp

    return wait_for(once, what="the API to accept the submit (not 429)", timeout=30.0, poll=Poll(0.3))


def _accepted(run: ScenarioRun, resp: Any, what: str) -> str:
    run.expect(resp.status_code == 202, f"{what}: accepted (202)", f"{resp.status_code} {resp.text[:200]}")
    return resp.json()["id"]


def _job(run: ScenarioRun, job_id: str) -> dict[str, Any]:
    return run.ledger.status(job_id) or {}


def _terminal(run: ScenarioRun, *ids: str) -> dict[str, dict[str, Any]] | None:
    jobs = {i: _job(run, i) for i in ids}
    return jobs if all(j.get("status") in TERMINAL for j in jobs.values()) else None


def _seconds(job: dict[str, Any], start: str = "started_at", end: str = "finished_at") -> float | None:
    from datetime import datetime

    try:
        a = datetime.fromisoformat(str(job[start]))
        b = datetime.fromisoformat(str(job[end]))
    except (KeyError, TypeError, ValueError):
        return None
    return (b - a).total_seconds()


def _brief(job: dict[str, Any]) -> str:
    return (f"{job.get('status')} {job.get('error_code')} at {job.get('progress')}%: "
            f"{str(job.get('error_message'))[:300]}")


@contextlib.contextmanager
def _cancel_leftovers(run: ScenarioRun) -> Iterator[None]:
    """If the scenario fails with a render still running (a planted hang), cancel it so the
    worker kills its ffmpeg and the stack is usable by the next test."""
    try:
        yield
    except BaseException:
        for job_id, acc in list(run.ledger.jobs.items()):
            with contextlib.suppress(Exception):
                if _job(run, job_id).get("status") not in TERMINAL and acc.api is not None:
                    acc.api.cancel(job_id)
        raise


def _ffmpeg_with(stack: Any, needle: str) -> list[Any]:
    return [p for w in stack.workers if w.state().get("Running") for p in processes(w)
            if p.args.split(" ", 1)[0].endswith("ffmpeg") and needle in p.args and p.stat[:1] != "Z"]


# ------------------------------------------------------------------------------- scenarios
@runs(R.ENCODER_MISSING)
def test_encoder_missing_falls_back_to_libx264(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    run.steady_state_before()
    resp = run.submit(title="encoder fallback", duration=2.0)
    run.expect(resp.status_code == 202, "render accepted (202)", f"{resp.status_code} {resp.text[:200]}")
    job_id = resp.json()["id"]
    job = run.detect(lambda: (j := run.ledger.status(job_id)) and j["status"] in
                     ("completed", "failed", "timeout") and j, "the job to finish on a machine without h264_nvenc")
    run.expect(job["status"] == "completed", "job completed with the CPU encoder",
               f"{job['status']}: {job.get('error_code')} {job.get('error_message')}")
    run.expect(job.get("encoder_used") == "libx264", "job record names encoder_used=libx264",
               f"encoder_used={job.get('encoder_used')!r}")
    run.steady_state_after()


@runs(R.INPUT_MISSING)
def test_input_missing_fails_fast_naming_the_path(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    stack = run.target.stack
    assert stack is not None
    clip = corpus().valid_video
    run.steady_state_before()

    def refused(rel: str, code: str, what: str) -> None:
        resp = run.submit(title=what, duration=1.0, input_asset=rel)
        if resp.status_code == 202:  # accepted: then the job must fail with the code, not retry
            job = run.ledger.wait_terminal(resp.json()["id"], R.INPUT_MISSING.detect_s, what)
            run.expect(job["status"] == "failed" and job.get("error_code") == code,
                       f"{what}: job failed with {code}", _brief(job))
            run.expect(rel in str(job.get("error_message")), f"{what}: the error names {rel!r}", _brief(job))
            return
        err = (resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}
               ).get("error") or {}
        run.expect(resp.status_code == 400 and err.get("code") == code,
                   f"{what}: 400 {code}", f"{resp.status_code} {resp.text[:300]}")
        run.expect(rel in str(err.get("message")), f"{what}: the message names {rel!r}", str(err.get("message")))

    # 1. at submit time: the API checks the path (R §一.1 错误1: ls -la the path)
    refused(missing_asset(stack), "input_not_found", "asset that does not exist")
    locked = run.inject(PlacedAsset(stack, clip, mode=0o000))
    refused(locked.rel, "input_permission_denied", "asset with mode 000")

    # 2. accepted, then gone / locked before a worker gets to it: the worker's gate must say so
    gone = run.inject(PlacedAsset(stack, clip))
    shut = run.inject(PlacedAsset(stack, clip))
    frozen = [run.inject(Frozen(w)) for w in stack.workers]
    ids = {_accepted(run, run.submit(title="asset vanishes", duration=1.0, input_asset=gone.rel), "vanishing"):
           (gone.rel, "input_not_found"),
           _accepted(run, run.submit(title="asset locked", duration=1.0, input_asset=shut.rel), "locking"):
           (shut.rel, "input_permission_denied")}
    gone.remove()
    shut.chmod(0o000)
    for f in frozen:
        f.heal()  # scenario step: the workers resume and meet the changed assets
    with _cancel_leftovers(run):
        jobs = run.detect(lambda: _terminal(run, *ids), "both jobs to end once the workers resume")
    for job_id, (rel, code) in ids.items():
        job = jobs[job_id]
        run.expect(job["status"] == "failed" and job.get("error_code") == code,
                   f"{rel}: failed with {code} (ffprobe gate, before ffmpeg runs)", _brief(job))
        run.expect(rel in str(job.get("error_message")), f"{rel}: the error names the path", _brief(job))
        run.expect(int(job.get("attempts") or 0) == 1, f"{rel}: no retry (attempts 1)",
                   f"attempts={job.get('attempts')}")

    # remedy (R §一.1: chmod 644): the same asset renders
    run.remedy(lambda: shut.chmod(0o644), "chmod 644 the locked asset")
    again = _accepted(run, run.submit(title="asset readable again", duration=1.0, input_asset=shut.rel), "retry")
    job = run.recovered(lambda: (j := _job(run, again)).get("status") in TERMINAL and j,
                        "the render of the fixed asset to end")
    run.expect(job["status"] == "completed", "the fixed asset renders", _brief(job))
    run.steady_state_after()


def _corrupt_jobs(run: ScenarioRun, names: list[str]) -> dict[str, Any]:
    stack = run.target.stack
    assert stack is not None
    c = corpus()
    ids: dict[str, Any] = {}
    for name in names:
        fx = c.by_name(name)
        asset = run.inject(PlacedAsset(stack, fx.path))
        field = "audio_asset" if fx.role == "audio" else "input_asset"
        ids[_accepted(run, _submit(run, title=f"corrupt {name}", duration=2.0, **{field: asset.rel}), name)] = fx
    return ids


def _check_verdicts(run: ScenarioRun, ids: dict[str, Any], jobs: dict[str, dict[str, Any]]) -> None:
    wrong = []
    for job_id, fx in ids.items():
        job = jobs[job_id]
        took = _seconds(job)
        if fx.expected == "invalid_media":
            if job["status"] != "failed" or job.get("error_code") != "invalid_media":
                wrong.append(f"{fx.name}: expected failed invalid_media, got {_brief(job)}")
            elif took is not None and took > GATE_VERDICT_S:
                wrong.append(f"{fx.name}: invalid_media only after {took:.1f}s (gate verdict within "
                             f"{GATE_VERDICT_S:.0f}s)")
            elif int(job.get("attempts") or 0) != 1:
                wrong.append(f"{fx.name}: retried ({job.get('attempts')} attempts)")
        else:  # partly_damaged
            result = job.get("result") or {}
            if job["status"] != "completed":
                wrong.append(f"{fx.name} (partly damaged): expected completed after a tolerant retry, "
                             f"got {_brief(job)}")
            elif result.get("tolerant_retry") is False:
                run.journal.notes.append(f"{fx.name}: completed without needing the tolerant retry")
    run.expect(not wrong, "corrupt inputs: invalid_media from the gate within seconds; partly damaged "
               "inputs complete after one retry with -err_detect ignore_err", "; ".join(wrong))


@runs(R.INPUT_CORRUPT)
def test_input_corrupt_gate_rejects_and_tolerates(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    run.steady_state_before()
    with _cancel_leftovers(run):
        ids = _corrupt_jobs(run, [*GATE_CORRUPT, *GATE_DAMAGED])
        jobs = run.detect(lambda: _terminal(run, *ids), f"all {len(ids)} corrupt-input jobs to end",
                          poll=Poll(0.5))
    _check_verdicts(run, ids, jobs)
    run.steady_state_after()


@runs(R.INPUT_CORRUPT_CORPUS)
def test_input_corrupt_full_corpus(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    run.steady_state_before()
    names = [fx.name for fx in corpus()]
    run.expect(len(names) >= 25, "a corpus of >= 25 corrupt variants", f"{len(names)}")
    with _cancel_leftovers(run):
        ids = _corrupt_jobs(run, names)
        jobs = run.detect(lambda: _terminal(run, *ids), f"all {len(ids)} corpus jobs to end", poll=Poll(1.0))
    _check_verdicts(run, ids, jobs)
    run.steady_state_after()


@runs(R.TIMEOUT)
@pytest.mark.stack(**R.SLOW_STACK)
def test_timeout_kills_the_group_and_moves_on(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    stack = run.target.stack
    assert stack is not None
    run.steady_state_before()
    with _cancel_leftovers(run):
        long_id = _accepted(run, run.submit(title="far too long", duration=900.0, width=1280, height=720),
                            "long render")
        # the fault is the render itself: record the injection time when it is running
        run.detect(lambda: _job(run, long_id).get("status") == "running", "the long render to start", timeout=30)
        run.journal.time_to_detect_s = None
        run.mark_injected("the render runs past its time limit")  # time to detect counts from here
        next_id = _accepted(run, run.submit(title="queued behind", duration=1.0), "next job")
        job = run.detect(lambda: (j := _job(run, long_id)).get("status") in TERMINAL and j,
                         "the long render to end at RENDER_TIME_LIMIT=30s")
    run.expect(job["status"] == "timeout" and job.get("error_code") == "timeout",
               "job status timeout, error_code timeout", _brief(job))
    try:
        wait_for(lambda: not _ffmpeg_with(stack, "1280x720"), what="the long render's ffmpeg to be gone",
                 timeout=5.0, poll=Poll(0.2))
    except WaitTimeout:
        run.fail("the whole process group killed at the deadline (no orphan ffmpeg)",
                 f"still running: {[p.args[:120] for p in _ffmpeg_with(stack, '1280x720')]}")
    run.remedy(lambda: None, "nothing: the worker itself moves on to the next job")
    nxt = run.recovered(lambda: (j := _job(run, next_id)).get("status") in TERMINAL and j,
                        "the job queued behind the timed-out one to end")
    run.expect(nxt["status"] == "completed", "the worker takes the next job and completes it", _brief(nxt))
    run.steady_state_after()


@runs(R.HANG)
@pytest.mark.stack(**R.SLOW_STACK)
def test_hang_watchdog_kills_frozen_ffmpeg(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    stack = run.target.stack
    assert stack is not None
    run.steady_state_before()
    with _cancel_leftovers(run):
        long_id = _accepted(run, run.submit(title="will hang", duration=900.0, width=1280, height=720),
                            "long render")
        stop = run.inject(ProcessStopped(stack.workers))
        next_id = _accepted(run, run.submit(title="queued behind the hang", duration=1.0), "next job")
        run.expect(stop.stopped(), "the render's ffmpeg is stopped (state T)", stop.describe())
        job = run.detect(lambda: (j := _job(run, long_id)).get("status") in TERMINAL and j,
                         "the watchdog to end the job after RENDER_STALL_TIMEOUT=10s without progress")
    run.expect(job["status"] == "timeout" and job.get("error_code") == "timeout",
               "job status timeout, error_code timeout", _brief(job))
    run.expect("no progress" in str(job.get("error_message")),
               "ended by the progress watchdog (no progress), not by the total deadline", _brief(job))
    try:
        wait_for(lambda: not stop.alive(), what="the stopped ffmpeg to be gone", timeout=5.0, poll=Poll(0.2))
    except WaitTimeout:
        run.fail("the frozen ffmpeg's whole group killed (no orphan)", f"still there: {stop.describe()}")
    run.remedy(lambda: None, "nothing: the worker itself moves on to the next job")
    nxt = run.recovered(lambda: (j := _job(run, next_id)).get("status") in TERMINAL and j,
                        "the job queued behind the hung one to end")
    run.expect(nxt["status"] == "completed", "the worker takes the next job and completes it", _brief(nxt))
    run.steady_state_after()


OOM_STACK = dict(workers=1, worker_mem_limit="350m", env={"RENDER_SEGMENT_SECONDS": "2"})


@runs(R.OOM)
@pytest.mark.stack(**OOM_STACK)
def test_oom_bounded_and_segments_keep_memory_flat(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    stack = run.target.stack
    assert stack is not None
    worker = stack.workers[0]
    run.steady_state_before()
    kills_before = oom_kills(worker)
    with _cancel_leftovers(run):
        big = _accepted(run, _submit(run, preset="medium", title="4K over the memory limit", duration=4.0,
                                     width=3840, height=2160), "4K render")
        job = run.detect(lambda: (j := _job(run, big)).get("status") in TERMINAL and j,
                         "the 4K render to end (OOM kill, then bounded attempts)")
    kills = oom_kills(worker) - kills_before
    run.journal.notes.append(f"oom kills in the worker's cgroup: {kills}; 4K job: {_brief(job)}; "
                             f"attempts {job.get('attempts')}")
    run.expect(kills > 0 or job["status"] != "completed",
               "the 4K render really hits the 350 MiB limit (an OOM kill)", f"no OOM kill, {_brief(job)}")
    run.expect(job["status"] == "completed" or (job["status"] == "failed"
                                                and job.get("error_code") == "resource_exhausted"),
               "completed after redelivery, or failed resource_exhausted", _brief(job))

    # R §一.2 方案1: segments keep peak memory flat as the duration grows
    run.remedy(lambda: None, "render at a sane resolution, in 2 s segments")
    short = _accepted(run, run.submit(title="short", duration=2.0, width=640, height=360), "short render")
    long = _accepted(run, run.submit(title="six times longer", duration=12.0, width=640, height=360),
                     "long render")
    done = run.recovered(lambda: _terminal(run, short, long), "both segment renders to end")
    for jid in (short, long):
        run.expect(done[jid]["status"] == "completed", "segment render completes", _brief(done[jid]))
    rs, rl = (done[short].get("result") or {}), (done[long].get("result") or {})
    run.expect(rl.get("segments") == math.ceil(12.0 / 2), "a 12 s render done in six 2 s segments",
               f"segments={rl.get('segments')}")
    ps, pl = int(rs.get("peak_rss_kb") or 0), int(rl.get("peak_rss_kb") or 0)
    run.journal.notes.append(f"peak ffmpeg RSS: 2 s render {ps} KiB, 12 s render {pl} KiB")
    run.expect(ps > 0 and pl <= ps * 1.5, "peak ffmpeg memory flat as duration grows (<= 1.5x)",
               f"{ps} KiB for 2 s, {pl} KiB for 12 s")
    run.steady_state_after()


@runs(R.STUCK_99)
def test_stuck_99_final_step_ends_with_the_error(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    stack = run.target.stack
    assert stack is not None
    c = corpus()
    run.steady_state_before()
    damaged = run.inject(PlacedAsset(stack, c.by_name("audio_payload_damaged").path))
    good = run.inject(PlacedAsset(stack, c.valid_audio))
    with _cancel_leftovers(run):
        a = _accepted(run, run.submit(title="damaged audio", duration=2.0, audio_asset=damaged.rel), "damaged")
        b = _accepted(run, run.submit(title="audio breaks later", duration=20.0, width=1280, height=720,
                                      audio_asset=good.rel), "breaking audio")
        # scenario step: once the video segments are under way (gate passed), the audio turns to garbage
        run.detect(lambda: (j := _job(run, b)).get("status") == "running" and float(j.get("progress") or 0) > 0,
                   "the 20 s render to be rendering its video")
        good.replace_with(corpus().by_name("audio_garbage").path.read_bytes())
        jobs = run.detect(lambda: _terminal(run, a, b), "both jobs to leave 99 % and end within the deadline")
    ja, jb = jobs[a], jobs[b]
    ok_a = ja["status"] == "completed" or (ja["status"] == "failed" and len(str(ja.get("error_message")).splitlines()) > 1)
    run.expect(ok_a, "damaged audio: completes (tolerant retry) or fails with ffmpeg's error", _brief(ja))
    run.expect(jb["status"] == "failed", "audio broken at the final step: the job fails", _brief(jb))
    msg = str(jb.get("error_message"))
    run.expect("final" in msg and len(msg.splitlines()) > 1,
               "the error names the final audio/metadata step and carries ffmpeg's stderr", _brief(jb))
    run.steady_state_after()


@runs(R.STORAGE_FULL)
def test_storage_full_fails_never_completes_without_output(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    stack = run.target.stack
    assert stack is not None
    run.steady_state_before()
    fill = run.inject(StorageFilled(stack.api))
    with _cancel_leftovers(run):
        ids = [_accepted(run, run.submit(title=f"onto a full disk {i}", duration=2.0), "render") for i in range(2)]
        jobs = run.detect(lambda: _terminal(run, *ids), "renders onto the full volume to end")
    for jid, job in jobs.items():
        run.expect(job["status"] == "failed" and job.get("error_code") == "storage_full",
                   "failed with storage_full (never completed without a file)", _brief(job))
    run.heal(fill, "free space on the output volume (delete the filler)")
    again = _accepted(run, run.submit(title="after freeing space", duration=2.0), "render")
    job = run.recovered(lambda: (j := _job(run, again)).get("status") in TERMINAL and j,
                        "a render after freeing space to end")
    run.expect(job["status"] == "completed", "a render completes once space is free", _brief(job))
    run.steady_state_after()
