"""Render pipeline scenarios (R §一)."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from renderchaos.errors import WaitTimeout
from renderchaos.faults.container import oom_kills, processes
from renderchaos.faults.media import PlacedAsset, corpus
from renderchaos.faults.process import OomTakesTheWorker
from renderchaos.faults.spec import FillStorage
from renderchaos.platforms.base import ErrorKind, Feature, Job, JobState
from renderchaos.scenario import ScenarioRun, runs
from renderchaos.wait import Limit, Poll, wait_for
from scenarios import render as R
from suites.conftest import brief, cancel_leftovers, ended, hold_workers, submit_retrying

#: ffprobe gate verdicts must come "within seconds" (SCENARIOS.md render.input_corrupt): the
#: time from a worker picking the job up to its terminal state.
GATE_VERDICT = Limit(10.0, "SCENARIOS.md render.input_corrupt: rejected within seconds")
#: a killed render's ffmpeg group must be gone this soon after the job ended (no orphan)
GROUP_GONE = Limit(5.0, "R §一.3: kill the process group at the deadline")
#: Representative subset of the corrupt corpus for the gate (the full corpus is a resilience run).
GATE_CORRUPT = ("zero_bytes", "garbage_random_64k", "html_error_page_as_mp4", "truncated_in_moov",
                "moov_missing", "unsupported_fourcc", "absurd_dimensions_8x8", "wav_as_mp4_for_video")
GATE_DAMAGED = ("payload_bitflip_light", "truncated_mdat_50pct")


# ------------------------------------------------------------------------------- helpers
def _ffmpeg_with(run: ScenarioRun, needle: str) -> list[Any]:
    return [p for w in run.target.containers("worker") if w.state().get("Running") for p in processes(w)
            if p.args.split(" ", 1)[0].endswith("ffmpeg") and needle in p.args and p.stat[:1] != "Z"]


# ------------------------------------------------------------------------------- scenarios
@runs(R.ENCODER_MISSING)
def test_encoder_missing_falls_back_to_libx264(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    run.steady_state_before()
    job_id = run.accepted(run.submit(title="encoder fallback", duration=2.0), "render")
    job = run.detect(lambda: ended(run, job_id), "the job to finish on a machine without h264_nvenc")
    run.expect(job.state is JobState.COMPLETED, "job completed with the CPU encoder", brief(job))
    run.expect(job.encoder == "libx264", "job record names the encoder used: libx264", f"encoder={job.encoder!r}")
    run.steady_state_after()


@runs(R.INPUT_MISSING)
def test_input_missing_fails_fast_naming_the_path(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    clip = corpus().valid_video
    run.steady_state_before()

    def refused(asset: Any, code: str, what: str) -> None:
        answer = run.submit(title=what, duration=1.0, input=asset)
        if answer.ok:  # accepted: then the job must fail with the code, not retry
            job = run.ledger.wait_terminal(answer.value or "", run.detect_wait, what)
            run.expect(job.state is JobState.FAILED and job.error_code == code, f"{what}: job failed with {code}",
                       brief(job))
            run.expect(asset.ref in str(job.error_message), f"{what}: the error names {asset.ref!r}", brief(job))
            return
        err = answer.error
        run.expect(err is not None and err.kind is ErrorKind.INVALID_PARAMETER and err.code == code,
                   f"{what}: refused as invalid ({code})", str(answer))
        assert err is not None
        run.expect(asset.ref in err.message, f"{what}: the message names {asset.ref!r}", err.message)

    # 1. at submit time: the platform checks the path (R §一.1 错误1: ls -la the path)
    refused(run.platform.missing_asset(), "input_not_found", "asset that does not exist")
    locked = run.inject(PlacedAsset(run.platform, clip, mode=0o000))
    refused(locked.asset, "input_permission_denied", "asset with mode 000")

    # 2. accepted, then gone / locked before a worker gets to it: the worker's gate must say so
    gone = run.inject(PlacedAsset(run.platform, clip))
    shut = run.inject(PlacedAsset(run.platform, clip))
    frozen = run.inject(hold_workers(run))
    ids = {run.accepted(run.submit(title="asset vanishes", duration=1.0, input=gone.asset), "vanishing"):
           (gone.rel, "input_not_found"),
           run.accepted(run.submit(title="asset locked", duration=1.0, input=shut.asset), "locking"):
           (shut.rel, "input_permission_denied")}
    gone.path.unlink()
    shut.chmod(0o000)
    frozen.heal()  # scenario step: the workers resume and meet the changed assets
    with cancel_leftovers(run):
        jobs = run.detect(lambda: run.terminal(*ids), "both jobs to end once the workers resume")
    for job_id, (rel, code) in ids.items():
        job = jobs[job_id]
        run.expect(job.state is JobState.FAILED and job.error_code == code,
                   f"{rel}: failed with {code} (ffprobe gate, before ffmpeg runs)", brief(job))
        run.expect(rel in str(job.error_message), f"{rel}: the error names the path", brief(job))
        run.expect(job.attempts in (None, 1), f"{rel}: no retry (attempts 1)", f"attempts={job.attempts}")

    # remedy (R §一.1: chmod 644): the same asset renders
    run.remedy(lambda: shut.chmod(0o644), "chmod 644 the locked asset")
    again = run.accepted(run.submit(title="asset readable again", duration=1.0, input=shut.asset), "retry")
    job = run.recovered(lambda: ended(run, again), "the render of the fixed asset to end")
    run.expect(job.state is JobState.COMPLETED, "the fixed asset renders", brief(job))
    run.steady_state_after()


def _corrupt_jobs(run: ScenarioRun, names: list[str]) -> dict[str, Any]:
    c = corpus()
    ids: dict[str, Any] = {}
    for name in names:
        fx = c.by_name(name)
        asset = run.inject(PlacedAsset(run.platform, fx.path)).asset
        role = {"audio": asset} if fx.role == "audio" else {"input": asset}
        ids[submit_retrying(run, title=f"corrupt {name}", duration=2.0, **role)] = fx
    return ids


def _check_verdicts(run: ScenarioRun, ids: dict[str, Any], jobs: dict[str, Job]) -> None:
    wrong = []
    for job_id, fx in ids.items():
        job = jobs[job_id]
        took = job.run_seconds
        if fx.expected == "invalid_media":
            if job.state is not JobState.FAILED or job.error_code != "invalid_media":
                wrong.append(f"{fx.name}: expected failed invalid_media, got {brief(job)}")
            elif took is not None and took > GATE_VERDICT.seconds:
                wrong.append(f"{fx.name}: invalid_media only after {took:.1f}s (gate verdict within "
                             f"{GATE_VERDICT})")
            elif job.attempts not in (None, 1):
                wrong.append(f"{fx.name}: retried ({job.attempts} attempts)")
        else:  # partly_damaged
            if job.state is not JobState.COMPLETED:
                wrong.append(f"{fx.name} (partly damaged): expected completed after a tolerant retry, "
                             f"got {brief(job)}")
            elif job.metrics.get("tolerant_retry") is False:
                run.journal.notes.append(f"{fx.name}: completed without needing the tolerant retry")
    run.expect(not wrong, "corrupt inputs: invalid_media from the gate within seconds; partly damaged "
               "inputs complete after one retry with -err_detect ignore_err", "; ".join(wrong))


@runs(R.INPUT_CORRUPT)
def test_input_corrupt_gate_rejects_and_tolerates(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    run.steady_state_before()
    with cancel_leftovers(run):
        ids = _corrupt_jobs(run, [*GATE_CORRUPT, *GATE_DAMAGED])
        jobs = run.detect(lambda: run.terminal(*ids), f"all {len(ids)} corrupt-input jobs to end", poll=Poll(0.5))
    _check_verdicts(run, ids, jobs)
    run.steady_state_after()


@runs(R.INPUT_CORRUPT_CORPUS)
def test_input_corrupt_full_corpus(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    run.steady_state_before()
    names = [fx.name for fx in corpus()]
    run.expect(len(names) >= 25, "a corpus of >= 25 corrupt variants", f"{len(names)}")
    if not run.platform.has(Feature.AUDIO_TRACKS):  # audio-track fixtures need a separate audio input
        audio = [fx.name for fx in corpus() if fx.role == "audio"]
        names = [n for n in names if n not in audio]
        run.journal.notes.append(f"{len(audio)} audio-track variants not sent: the platform takes no separate "
                                 f"audio track ({', '.join(audio)})")
    with cancel_leftovers(run):
        ids = _corrupt_jobs(run, names)
        jobs = run.detect(lambda: run.terminal(*ids), f"all {len(ids)} corpus jobs to end", poll=Poll(1.0))
    _check_verdicts(run, ids, jobs)
    run.steady_state_after()


@runs(R.TIMEOUT)
@pytest.mark.stack(**R.SLOW_STACK)
def test_timeout_kills_the_group_and_moves_on(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    run.steady_state_before()
    with cancel_leftovers(run):
        long_id = run.accepted(run.submit(title="far too long", duration=900.0, width=1280, height=720),
                               "long render")
        # the fault is the render itself: it counts as injected once it is running
        wait_for(lambda: (j := run.job(long_id)) is not None and j.state is JobState.RUNNING,
                 what="the long render to start", timeout=run.wait(run.scenario.detect or 30.0), poll=Poll(0.2))
        run.mark_injected(f"the render runs past its time limit ({R.RENDER_TIME_LIMIT_S}s)")
        next_id = run.accepted(run.submit(title="queued behind", duration=1.0), "next job")
        job = run.detect(lambda: ended(run, long_id), f"the long render to end at its {R.RENDER_TIME_LIMIT_S}s limit")
    run.expect(job.state is JobState.TIMEOUT and job.error_code == "timeout", "job status timeout, error_code timeout",
               brief(job))
    try:
        wait_for(lambda: not _ffmpeg_with(run, "1280x720"), what="the long render's ffmpeg to be gone",
                 timeout=GROUP_GONE.seconds, poll=Poll(0.2))
    except WaitTimeout:
        run.fail(f"the whole process group killed at the deadline (no orphan ffmpeg within {GROUP_GONE})",
                 f"still running: {[p.args[:120] for p in _ffmpeg_with(run, '1280x720')]}")
    nxt = run.recovered(lambda: ended(run, next_id), "the job queued behind the timed-out one to end")
    run.expect(nxt.state is JobState.COMPLETED, "the worker takes the next job and completes it", brief(nxt))
    run.steady_state_after()


@runs(R.HANG)
@pytest.mark.stack(**R.SLOW_STACK)
def test_hang_watchdog_kills_frozen_ffmpeg(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    run.steady_state_before()
    with cancel_leftovers(run):
        long_id = run.accepted(run.submit(title="will hang", duration=900.0, width=1280, height=720), "long render")
        (spec,) = R.HANG.faults
        stop = run.inject(spec)
        next_id = run.accepted(run.submit(title="queued behind the hang", duration=1.0), "next job")
        run.expect(stop.stopped(), "the render's ffmpeg is stopped (state T)", stop.describe())
        job = run.detect(lambda: ended(run, long_id),
                         f"the watchdog to end the job after {R.RENDER_STALL_TIMEOUT_S}s without progress")
    run.expect(job.state is JobState.TIMEOUT and job.error_code == "timeout", "job status timeout, error_code timeout",
               brief(job))
    run.expect("no progress" in str(job.error_message),
               "ended by the progress watchdog (no progress), not by the total deadline", brief(job))
    try:
        wait_for(lambda: not stop.alive(), what="the stopped ffmpeg to be gone", timeout=GROUP_GONE.seconds,
                 poll=Poll(0.2))
    except WaitTimeout:
        run.fail(f"the frozen ffmpeg's whole group killed (no orphan within {GROUP_GONE})",
                 f"still there: {stop.describe()}")
    nxt = run.recovered(lambda: ended(run, next_id), "the job queued behind the hung one to end")
    run.expect(nxt.state is JobState.COMPLETED, "the worker takes the next job and completes it", brief(nxt))
    run.steady_state_after()


#: one worker, 2 s segments; the memory limit itself is the fault (set on the running worker)
OOM_STACK = dict(workers=1, env={"RENDER_SEGMENT_SECONDS": "2"})


@runs(R.OOM)
@pytest.mark.stack(**OOM_STACK)
def test_oom_bounded_and_segments_keep_memory_flat(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    worker = run.target.container("worker")
    run.steady_state_before()
    (limit,) = R.OOM.faults
    run.inject(limit)
    kills_before = oom_kills(worker)
    with cancel_leftovers(run):
        big = submit_retrying(run, preset="medium", title="4K over the memory limit", duration=4.0, width=3840,
                              height=2160)
        job = run.detect(lambda: ended(run, big), "the 4K render to end (OOM kill, then bounded attempts)")
    kills = oom_kills(worker) - kills_before
    run.journal.notes.append(f"oom kills in the worker's cgroup: {kills}; 4K job: {brief(job)}; "
                             f"attempts {job.attempts}")
    run.expect(kills > 0 or job.state is not JobState.COMPLETED,
               f"the 4K render really hits the {R.OOM_LIMIT} limit (an OOM kill)", f"no OOM kill, {brief(job)}")
    run.expect(job.state is JobState.COMPLETED or (job.state is JobState.FAILED
                                                   and job.error_code == "resource_exhausted"),
               "completed after redelivery, or failed resource_exhausted", brief(job))

    # The OOM killer takes the worker process too (R §一.2 "Killed"): each delivery dies with its
    # worker, so the task must be delivered again (late ack) and end after a bounded number of
    # attempts, charged once; never lost with its worker, never retried forever.
    takes = run.inject(OomTakesTheWorker(run.target.containers("worker")))
    with cancel_leftovers(run):
        again = submit_retrying(run, preset="medium", title="4K, the worker killed each time", duration=4.0,
                                width=3840, height=2160)
        job = run.detect(lambda: ended(run, again),
                         "the render to end after its deliveries died with their worker (bounded attempts)")
    run.journal.notes.append(f"worker processes OOM-killed: {len(takes.marked)}; job: {brief(job)}, "
                             f"attempts {job.attempts}")
    run.expect(len(takes.marked) >= 1 and (job.attempts or 0) >= 2,
               "the task delivered again after its worker died (late ack): attempts >= 2",
               f"attempts={job.attempts}, worker processes marked for the OOM killer: {len(takes.marked)}")
    run.expect(job.state is JobState.COMPLETED or (job.state is JobState.FAILED
                                                   and job.error_code == "resource_exhausted"),
               "completed by a later delivery, or failed resource_exhausted after bounded attempts", brief(job))
    takes.heal()  # scenario step: the OOM killer picks the biggest process again

    # R §一.2 方案1: segments keep peak memory flat as the duration grows
    run.remedy(lambda: None, "render at a sane resolution, in 2 s segments")
    short = run.accepted(run.submit(title="short", duration=2.0, width=640, height=360), "short render")
    long = run.accepted(run.submit(title="six times longer", duration=12.0, width=640, height=360), "long render")
    done = run.recovered(lambda: run.terminal(short, long), "both segment renders to end")
    for jid in (short, long):
        run.expect(done[jid].state is JobState.COMPLETED, "segment render completes", brief(done[jid]))
    ms, ml = done[short].metrics, done[long].metrics
    run.expect(ml.get("segments") == math.ceil(12.0 / 2), "a 12 s render done in six 2 s segments",
               f"segments={ml.get('segments')}")
    ps, pl = int(ms.get("peak_rss_kb") or 0), int(ml.get("peak_rss_kb") or 0)
    run.journal.notes.append(f"peak ffmpeg RSS: 2 s render {ps} KiB, 12 s render {pl} KiB")
    run.expect(ps > 0 and pl <= ps * 1.5, "peak ffmpeg memory flat as duration grows (<= 1.5x)",
               f"{ps} KiB for 2 s, {pl} KiB for 12 s")
    run.steady_state_after()


@runs(R.STUCK_99)
def test_stuck_99_final_step_ends_with_the_error(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    c = corpus()
    run.steady_state_before()
    damaged = run.inject(PlacedAsset(run.platform, c.by_name("audio_payload_damaged").path))
    good = run.inject(PlacedAsset(run.platform, c.valid_audio))
    with cancel_leftovers(run):
        a = run.accepted(run.submit(title="damaged audio", duration=2.0, audio=damaged.asset), "damaged")
        b = run.accepted(run.submit(title="audio breaks later", duration=20.0, width=1280, height=720,
                                    audio=good.asset), "breaking audio")
        # scenario step: once the video segments are under way (gate passed), the audio turns to garbage
        wait_for(lambda: (j := run.job(b)) is not None and j.state is JobState.RUNNING and (j.progress or 0) > 0,
                 what="the 20 s render to be rendering its video", timeout=run.detect_wait, poll=Poll(0.2))
        good.replace_with(corpus().by_name("audio_garbage").path.read_bytes())
        jobs = run.detect(lambda: run.terminal(a, b), "both jobs to leave 99 % and end within the deadline")
    ja, jb = jobs[a], jobs[b]
    ok_a = ja.state is JobState.COMPLETED or (ja.state is JobState.FAILED
                                              and len(str(ja.error_message).splitlines()) > 1)
    run.expect(ok_a, "damaged audio: completes (tolerant retry) or fails with ffmpeg's error", brief(ja))
    run.expect(jb.state is JobState.FAILED, "audio broken at the final step: the job fails", brief(jb))
    msg = str(jb.error_message)
    run.expect("final" in msg and len(msg.splitlines()) > 1,
               "the error names the final audio/metadata step and carries ffmpeg's stderr", brief(jb))
    run.steady_state_after()


#: the nearly full volume keeps this fraction of one render's output free: the render runs out
#: of space part way through writing its file (not before it starts)
NEARLY_FULL_FRACTION = 4
MID_WRITE = dict(duration=6.0, width=640, height=360)
#: what a storage_full error must say, whatever the platform's wording
SAYS_FULL = re.compile(r"\bfull\b|no space left|ENOSPC|disk quota", re.I)


@runs(R.STORAGE_FULL)
def test_storage_full_fails_never_completes_without_output(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    run.steady_state_before()
    (spec,) = R.STORAGE_FULL.faults
    fill = run.inject(spec)
    with cancel_leftovers(run):
        ids = [run.accepted(run.submit(title=f"onto a full disk {i}", duration=2.0), "render") for i in range(2)]
        jobs = run.detect(lambda: run.terminal(*ids), "renders onto the full volume to end")
    for job in jobs.values():
        run.expect(job.state is JobState.FAILED and job.error_code == "storage_full",
                   "failed with storage_full (never completed without a file)", brief(job))
        run.expect(bool(SAYS_FULL.search(str(job.error_message))),
                   "the error tells the operator the output volume is full (R §八: 存储空间是否已满), not merely "
                   "that the output is missing", brief(job))
    run.heal(fill, "free space on the output volume (delete the filler)")
    again = run.accepted(run.submit(title="after freeing space", **MID_WRITE), "render")
    job = run.recovered(lambda: ended(run, again), "a render after freeing space to end")
    run.expect(job.state is JobState.COMPLETED, "a render completes once space is free", brief(job))

    # the volume runs out part way through a render: a truncated file must never be "completed"
    size = job.output_bytes or 0
    run.expect(size > 0, "the platform reports the size of a completed output", f"output_bytes={job.output_bytes}")
    assert isinstance(spec, FillStorage)
    nearly = run.inject(FillStorage(spec.role, spec.mount, leave_bytes=size // NEARLY_FULL_FRACTION))
    with cancel_leftovers(run):
        mid = run.accepted(run.submit(title="runs out of space mid-write", **MID_WRITE), "render")
        cut = run.recovered(lambda: ended(run, mid), "a render that fills the volume part way to end")
    run.expect(cut.state is JobState.FAILED and cut.error_code == "storage_full"
               and bool(SAYS_FULL.search(str(cut.error_message))),
               f"a render of {size} bytes with {size // NEARLY_FULL_FRACTION} bytes left fails storage_full saying "
               "the volume is full, never completed with a truncated file", brief(cut))
    run.heal(nearly, "free space on the output volume again")
    run.steady_state_after()
