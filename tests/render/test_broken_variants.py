"""Each planted render/remux bug must actually break the behaviour its test guards."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import threading

import pytest

import refstack.broken
from refstack.render import InvalidMedia, RenderError, RenderFailed, RenderLimits, RenderTimeout, TemplateSpec, render
from refstack.render.remux import RemuxLimiter, open_remux
from renderchaos.wait import Poll, wait_for

FAST = dict(width=160, height=120, fps=10, preset="ultrafast")
OURS = [n for n in refstack.broken.VARIANTS if n.startswith(("render_", "remux_"))]


def spec(**kw) -> TemplateSpec:
    return TemplateSpec(**{"title": "broken", "duration": 2.0, **FAST, **kw})


def test_every_render_variant_is_registered():
    assert set(OURS) >= {
        "render_no_group_kill", "render_no_watchdog", "render_no_encoder_fallback", "render_no_probe_gate",
        "render_no_tolerant_retry", "render_complete_without_output", "render_no_segments",
        "remux_leave_ffmpeg_on_disconnect", "remux_no_cap"}


def test_no_group_kill_leaves_an_orphan_ffmpeg(tmp_path, broken, ffmpeg_children, leftovers):
    broken("render_no_group_kill")
    with pytest.raises(RenderTimeout):
        render(spec(duration=3600.0), tmp_path / "o.mp4",
               limits=RenderLimits(total_timeout=1.0, segment_seconds=3600))
    try:
        assert ffmpeg_children(), "the planted bug should have left ffmpeg running"
    finally:
        leftovers()


def test_no_watchdog_lets_a_stopped_ffmpeg_hang_until_the_deadline(tmp_path, broken, ffmpeg_children,
                                                                   no_orphans):
    broken("render_no_watchdog")

    def stop():
        pid = wait_for(lambda: (ffmpeg_children() or [None])[0], "ffmpeg child", 10, Poll(interval=0.02))
        os.kill(pid, signal.SIGSTOP)

    t = threading.Thread(target=stop, daemon=True)
    t.start()
    with pytest.raises(RenderTimeout) as exc:
        render(spec(duration=3600.0), tmp_path / "o.mp4",
               limits=RenderLimits(total_timeout=3.0, stall_timeout=0.5, segment_seconds=3600))
    t.join(5)
    assert exc.value.reason == "deadline"  # healthy: "stall" after 0.5 s


def test_no_encoder_fallback_fails_on_nvenc(tmp_path, broken):
    broken("render_no_encoder_fallback")
    with pytest.raises(RenderFailed, match="h264_nvenc"):
        render(spec(encoder="h264_nvenc"), tmp_path / "o.mp4")


def test_no_probe_gate_loses_the_input_not_found_code(tmp_path, broken, no_orphans):
    broken("render_no_probe_gate")
    with pytest.raises(RenderError) as exc:
        render(spec(background_video=tmp_path / "missing.mp4"), tmp_path / "o.mp4")
    assert exc.value.code != "input_not_found"


def test_no_tolerant_retry_fails_partly_damaged_input(tmp_path, broken, corpus):
    broken("render_no_tolerant_retry")
    with pytest.raises(InvalidMedia):
        render(spec(background_video=corpus.by_name("payload_bitflip_heavy").path), tmp_path / "o.mp4")


def test_complete_without_output_reports_success_on_a_full_volume(tiny_volume, clip, broken, no_orphans):
    broken("render_complete_without_output")
    out = tiny_volume / "o.mp4"
    res = render(spec(duration=4.0, width=320, height=240, crf=10, background_video=clip), out,
                 limits=RenderLimits(segment_seconds=2))
    assert res is not None  # "completed"...
    valid = out.exists() and out.stat().st_size > 0 and os.system(f"ffprobe -v error '{out}' >/dev/null 2>&1") == 0
    assert not valid, "...without a valid file"


def test_no_segments_renders_in_one_pass(tmp_path, broken):
    broken("render_no_segments")
    res = render(spec(duration=5.0), tmp_path / "o.mp4", limits=RenderLimits(segment_seconds=2))
    assert res.segments == 1  # healthy: 3


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_remux_leave_ffmpeg_on_disconnect_piles_up(media_cache, broken, ffmpeg_children, leftovers):
    from media_fixtures import valid_clip

    broken("remux_leave_ffmpeg_on_disconnect")
    big = valid_clip(media_cache, 20, 1280, 720)  # far more than the 1 MiB pipe: ffmpeg blocks writing

    async def main():
        stream = open_remux(big, limiter=RemuxLimiter(1), chunk_size=1024)
        await stream.__anext__()
        await stream.aclose()

    asyncio.run(main())
    try:
        assert ffmpeg_children(), "the planted bug should have left the remux ffmpeg behind"
    finally:
        leftovers()
        gc.collect()  # the abandoned transport complains about its closed loop here, not in a later test


def test_remux_no_cap_never_says_busy(clip, broken):
    broken("remux_no_cap")
    limiter = RemuxLimiter(1)
    streams = [open_remux(clip, limiter=limiter) for _ in range(3)]
    assert limiter.active == 3
    for s in streams:
        asyncio.run(s.aclose())
