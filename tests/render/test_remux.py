"""Streaming remux: valid output, kill on disconnect within 1 s, concurrency cap."""

from __future__ import annotations

import asyncio
import gc
import pickle
import time

import pytest

from refstack.render import Busy, InputNotFound
from refstack.render.remux import RemuxLimiter, open_remux
from renderchaos.wait import Poll, wait_for

GONE_WITHIN = 1.0


async def _gone(children) -> float:
    start = time.monotonic()
    await asyncio.to_thread(wait_for, lambda: not children() and "gone", "remux ffmpeg gone", GONE_WITHIN,
                            Poll(interval=0.01))
    return time.monotonic() - start


def test_complete_download_is_a_valid_mp4(tmp_path, clip, probe_out, no_orphans):
    async def main():
        return b"".join([c async for c in open_remux(clip, limiter=RemuxLimiter(1))])

    out = tmp_path / "dl.mp4"
    out.write_bytes(asyncio.run(main()))
    info = probe_out(out)
    assert {s["codec_type"] for s in info["streams"]} == {"video", "audio"}
    assert abs(float(info["format"]["duration"]) - 2.0) <= 0.5


def test_closing_the_stream_early_kills_ffmpeg_within_a_second(clip, ffmpeg_children, no_orphans):
    limiter = RemuxLimiter(2)

    async def main():
        stream = open_remux(clip, limiter=limiter, chunk_size=4096)
        await stream.__anext__()
        assert ffmpeg_children() or True
        await stream.aclose()  # client disconnected
        return await _gone(ffmpeg_children)

    assert asyncio.run(main()) < GONE_WITHIN
    assert limiter.active == 0


def test_cancelling_the_consumer_task_kills_ffmpeg(clip, ffmpeg_children, no_orphans):
    limiter = RemuxLimiter(2)

    async def main():
        started = asyncio.Event()

        async def consume():
            async for _ in open_remux(clip, limiter=limiter, chunk_size=1024):
                started.set()
                await asyncio.Event().wait()  # a slow client: never asks for more

        task = asyncio.create_task(consume())
        await started.wait()
        task.cancel()  # what Starlette does on disconnect
        with pytest.raises(asyncio.CancelledError):
            await task
        return await _gone(ffmpeg_children)

    assert asyncio.run(main()) < GONE_WITHIN
    assert limiter.active == 0


def test_breaking_out_of_the_loop_kills_ffmpeg(clip, ffmpeg_children, no_orphans):
    async def main():
        async for _ in open_remux(clip, limiter=RemuxLimiter(1), chunk_size=1024):
            break
        gc.collect()
        return await _gone(ffmpeg_children)

    assert asyncio.run(main()) < GONE_WITHIN


def test_fifty_aborted_downloads_leave_no_ffmpeg(clip, ffmpeg_children, no_orphans):
    limiter = RemuxLimiter(50)

    async def one():
        stream = open_remux(clip, limiter=limiter, chunk_size=2048)
        await stream.__anext__()
        await stream.aclose()

    async def main():
        await asyncio.gather(*(one() for _ in range(50)))
        return await _gone(ffmpeg_children)

    asyncio.run(main())
    assert limiter.active == 0


def test_cap_raises_busy_with_retry_after_and_frees_slots(clip, no_orphans):
    limiter = RemuxLimiter(2, retry_after=7)

    async def main():
        a = open_remux(clip, limiter=limiter)
        b = open_remux(clip, limiter=limiter)
        with pytest.raises(Busy) as exc:
            open_remux(clip, limiter=limiter)
        assert exc.value.retry_after == 7 and exc.value.code == "busy"
        assert pickle.loads(pickle.dumps(exc.value)).retry_after == 7
        await a.__anext__()
        await a.aclose()
        c = open_remux(clip, limiter=limiter)  # a's slot is free again
        await c.aclose()
        await b.aclose()  # never started: closing it still frees the slot

    asyncio.run(main())
    assert limiter.active == 0


def test_missing_file_fails_before_taking_a_slot(tmp_path):
    limiter = RemuxLimiter(1)
    with pytest.raises(InputNotFound):
        open_remux(tmp_path / "gone.mp4", limiter=limiter)
    assert limiter.active == 0

# Throughput against a bare `ffmpeg | cat` pipe is a number, not a pass/fail: benchmarks/render_overhead.py
# measures it side by side (remux_throughput_ratio).
