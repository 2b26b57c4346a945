"""The render pipeline against real ffmpeg: gate, fallback, segments, retry, kills, storage."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from refstack.render import (
    InputNotFound,
    InputPermissionDenied,
    InvalidMedia,
    RenderError,
    RenderLimits,
    RenderTimeout,
    ResourceExhausted,
    StorageFull,
    TemplateSpec,
    render,
)
from renderchaos.wait import Poll, wait_for

GONE_WITHIN = 1.0
FAST = dict(width=160, height=120, fps=10, preset="ultrafast")
#: Small numbers so the kill paths are exercised in about a second.
QUICK = RenderLimits(total_timeout=60, stall_timeout=5, segment_seconds=300)


def spec(**kw) -> TemplateSpec:
    return TemplateSpec(**{"title": "renderchaos", "duration": 2.0, **FAST, **kw})


def assert_no_ffmpeg_children(children):
    left = wait_for(lambda: not children() and "none", "all ffmpeg children gone", GONE_WITHIN,
                    Poll(interval=0.02))
    assert left


# ------------------------------------------------------------------ happy path


def test_render_produces_a_verified_h264_aac_mp4(tmp_path, no_orphans, probe_out):
    seen: list[float] = []
    out = tmp_path / "out.mp4"
    res = render(spec(duration=3.0), out, limits=QUICK, on_progress=seen.append)
    info = probe_out(out)
    codecs = {s["codec_type"]: s["codec_name"] for s in info["streams"]}
    assert codecs == {"video": "h264", "audio": "aac"}
    assert abs(float(info["format"]["duration"]) - 3.0) <= 0.5
    assert info["format"]["tags"]["title"] == "renderchaos"
    assert res.output == out and res.size_bytes == out.stat().st_size > 0
    assert res.encoder == "libx264" and res.segments == 1 and not res.tolerant_retry
    assert seen == sorted(seen) and seen[-1] == 1.0, seen
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"], "temp files or work dirs left behind"


def test_background_video_and_audio_assets_are_used(tmp_path, clip, audio, no_orphans):
    res = render(spec(duration=3.0, background_video=clip, audio=audio), tmp_path / "o.mp4", limits=QUICK)
    assert [p.role for p in res.inputs] == ["video", "audio"]
    assert abs(res.duration - 3.0) <= 0.5


def test_title_with_quotes_colons_and_percent_is_rendered_verbatim(tmp_path):
    res = render(spec(title="it's 50%: {a,b} [c]; \\n"), tmp_path / "o.mp4", limits=QUICK)
    assert res.size_bytes > 0


# ------------------------------------------------------------------ encoder fallback (R §一.1 错误3)


@pytest.mark.parametrize("encoder", ["h264_nvenc", "h264_doesnotexist"])
def test_unusable_encoder_falls_back_to_libx264_and_is_recorded(tmp_path, encoder):
    res = render(spec(encoder=encoder), tmp_path / "o.mp4", limits=QUICK)
    assert res.requested_encoder == encoder
    assert res.encoder == "libx264"
    assert encoder in res.encoder_fallback_reason


# ------------------------------------------------------------------ segments (R §一.2 方案1)


def test_long_render_is_segmented_and_concatenated_to_the_right_duration(tmp_path, probe_out):
    out = tmp_path / "o.mp4"
    res = render(spec(duration=7.0), out, limits=RenderLimits(segment_seconds=2.0))
    assert res.segments == 4
    assert abs(float(probe_out(out)["format"]["duration"]) - 7.0) <= 0.5


def test_segments_follow_a_looped_background_video(tmp_path, clip):
    res = render(spec(duration=5.0, background_video=clip), tmp_path / "o.mp4",
                 limits=RenderLimits(segment_seconds=1.5))
    assert res.segments == 4 and abs(res.duration - 5.0) <= 0.5


# ------------------------------------------------------------------ probe gate (R §一.1 错误1/2)


def test_missing_asset_is_input_not_found_naming_the_path(tmp_path, no_orphans):
    missing = tmp_path / "nope.mp4"
    with pytest.raises(InputNotFound) as exc:
        render(spec(background_video=missing), tmp_path / "o.mp4", limits=QUICK)
    assert exc.value.code == "input_not_found" and str(missing) in exc.value.message
    assert not (tmp_path / "o.mp4").exists()


def test_unreadable_asset_is_permission_denied(tmp_path, clip):
    locked = tmp_path / "locked.mp4"
    locked.write_bytes(clip.read_bytes())
    locked.chmod(0)
    with pytest.raises(InputPermissionDenied) as exc:
        render(spec(background_video=locked), tmp_path / "o.mp4", limits=QUICK)
    assert str(locked) in exc.value.message and exc.value.code == "input_permission_denied"


def test_corrupt_asset_fails_within_seconds_as_invalid_media(tmp_path, corpus):
    bad = corpus.by_name("truncated_in_moov")
    start = time.monotonic()
    with pytest.raises(InvalidMedia) as exc:
        render(spec(background_video=bad.path), tmp_path / "o.mp4", limits=QUICK)
    assert time.monotonic() - start < 5
    assert str(bad.path) in exc.value.message


def test_partly_damaged_input_completes_after_one_tolerant_retry(tmp_path, corpus, no_orphans):
    damaged = corpus.by_name("payload_bitflip_heavy").path
    res = render(spec(duration=3.0, background_video=damaged), tmp_path / "o.mp4", limits=QUICK)
    assert res.tolerant_retry is True
    assert abs(res.duration - 3.0) <= 0.5


def test_partly_damaged_audio_completes_after_tolerant_retry(tmp_path, corpus):
    damaged = corpus.by_name("audio_payload_damaged").path
    res = render(spec(duration=3.0, audio=damaged), tmp_path / "o.mp4", limits=QUICK)
    assert res.tolerant_retry is True


# ------------------------------------------------------------------ kills (R §一.3)


def test_total_timeout_kills_the_whole_group(tmp_path, no_orphans, ffmpeg_children):
    start = time.monotonic()
    with pytest.raises(RenderTimeout) as exc:
        render(spec(duration=3600.0, width=640, height=480, fps=60),
               tmp_path / "o.mp4", limits=RenderLimits(total_timeout=1.0, stall_timeout=30, segment_seconds=3600))
    assert exc.value.code == "timeout" and exc.value.reason == "deadline"
    assert time.monotonic() - start < 3
    assert_no_ffmpeg_children(ffmpeg_children)


def _stop_first_ffmpeg(children) -> int:
    pid = wait_for(lambda: (children() or [None])[0], "an ffmpeg child to start", 10, Poll(interval=0.02))
    os.kill(pid, signal.SIGSTOP)
    return pid


def test_stalled_ffmpeg_is_detected_by_the_watchdog_and_killed(tmp_path, no_orphans, ffmpeg_children):
    import threading

    stopper = threading.Thread(target=_stop_first_ffmpeg, args=(ffmpeg_children,), daemon=True)
    stopper.start()
    start = time.monotonic()
    with pytest.raises(RenderTimeout) as exc:
        render(spec(duration=3600.0, width=640, height=480), tmp_path / "o.mp4",
               limits=RenderLimits(total_timeout=30, stall_timeout=1.0, segment_seconds=3600))
    stopper.join(5)
    assert exc.value.reason == "stall", exc.value
    assert time.monotonic() - start < 6
    assert_no_ffmpeg_children(ffmpeg_children)


class FakeSoftTimeLimit(Exception):
    """Stands in for celery.exceptions.SoftTimeLimitExceeded."""


def test_exception_raised_in_the_waiting_thread_kills_the_group(tmp_path, no_orphans, ffmpeg_children):
    def boom(signum, frame):
        raise FakeSoftTimeLimit("soft time limit")

    old = signal.signal(signal.SIGALRM, boom)
    signal.setitimer(signal.ITIMER_REAL, 0.7)
    try:
        with pytest.raises(FakeSoftTimeLimit):
            render(spec(duration=3600.0, width=640, height=480), tmp_path / "o.mp4",
                   limits=RenderLimits(total_timeout=30, segment_seconds=3600))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert_no_ffmpeg_children(ffmpeg_children)


def test_exception_from_the_progress_callback_kills_the_group(tmp_path, no_orphans, ffmpeg_children):
    def cb(frac: float) -> None:
        raise KeyboardInterrupt("worker shutting down")

    with pytest.raises(KeyboardInterrupt):
        render(spec(duration=3600.0), tmp_path / "o.mp4", limits=RenderLimits(segment_seconds=3600),
               on_progress=cb)
    assert_no_ffmpeg_children(ffmpeg_children)


def test_ffmpeg_killed_from_outside_is_resource_exhausted(tmp_path, no_orphans, ffmpeg_children):
    import threading

    def oom_kill():
        pid = wait_for(lambda: (ffmpeg_children() or [None])[0], "an ffmpeg child", 10, Poll(interval=0.02))
        os.kill(pid, signal.SIGKILL)  # what the kernel OOM killer does

    t = threading.Thread(target=oom_kill, daemon=True)
    t.start()
    with pytest.raises(ResourceExhausted) as exc:
        render(spec(duration=3600.0), tmp_path / "o.mp4", limits=RenderLimits(segment_seconds=3600))
    t.join(5)
    assert exc.value.code == "resource_exhausted"


# ------------------------------------------------------------------ "stuck at 99 %" (R §八)


def _swap_audio_at_final_step(audio_path: Path, replace):
    done = []

    def cb(frac: float) -> None:
        if frac >= 0.95 and not done:  # the segments are done; the audio/metadata step is next
            done.append(frac)
            audio_path.unlink()
            replace(audio_path)

    return cb


def test_bad_audio_at_the_final_step_fails_cleanly_with_ffmpeg_text(tmp_path, audio, no_orphans):
    a = tmp_path / "a.m4a"
    a.write_bytes(audio.read_bytes())
    cb = _swap_audio_at_final_step(a, lambda p: p.write_bytes(b"\x00garbage" * 500))
    start = time.monotonic()
    with pytest.raises(RenderError) as exc:
        render(spec(duration=2.0, audio=a), tmp_path / "o.mp4", limits=QUICK, on_progress=cb)
    assert time.monotonic() - start < QUICK.total_timeout
    assert "final audio/metadata step" in exc.value.message
    assert "Invalid data" in exc.value.detail or "a.m4a" in exc.value.detail, exc.value.detail
    assert not (tmp_path / "o.mp4").exists()


def test_audio_that_blocks_at_the_final_step_is_killed_by_the_watchdog(tmp_path, audio, no_orphans, ffmpeg_children):
    a = tmp_path / "a.m4a"
    a.write_bytes(audio.read_bytes())
    cb = _swap_audio_at_final_step(a, lambda p: os.mkfifo(p))  # open() blocks forever: no progress
    with pytest.raises(RenderTimeout) as exc:
        render(spec(duration=2.0, audio=a), tmp_path / "o.mp4",
               limits=RenderLimits(total_timeout=30, stall_timeout=1.0), on_progress=cb)
    assert exc.value.reason == "stall"
    assert_no_ffmpeg_children(ffmpeg_children)


# ------------------------------------------------------------------ storage full (R §八)


def test_full_output_volume_is_storage_full_and_leaves_no_output(tiny_volume, clip, no_orphans):
    out = tiny_volume / "o.mp4"
    with pytest.raises(StorageFull) as exc:
        render(spec(duration=4.0, width=320, height=240, crf=10, background_video=clip), out,
               limits=RenderLimits(segment_seconds=2))
    assert exc.value.code == "storage_full"
    assert not out.exists()
    assert list(tiny_volume.iterdir()) == [], "partial files left on the full volume"
