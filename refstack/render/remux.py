"""Streaming remux for downloads (the PeerTube pile-up case).

``ffmpeg -i pipe:0 -c copy -movflags frag_keyframe+empty_moov -f mp4 pipe:1`` in its
own process group; the file is fed into stdin, stdout is yielded in large chunks.
peertube-ffmpeg-pileup.zh.txt: 500+ of these were left "stuck" writing to a pipe
nobody read after clients disconnected. Here, when the consumer stops early (client
disconnect -> the generator is closed or its task cancelled), the group is killed
at once and reaped; and a :class:`RemuxLimiter` owned by the API caps how many run
at the same time (full -> :class:`Busy`, the API answers 503 + Retry-After).

Usage (FastAPI/Starlette)::

    limiter = RemuxLimiter(max_concurrent=8)          # one per process, at startup
    stream = open_remux(path, limiter=limiter)        # raises Busy / InputError now
    return StreamingResponse(stream, media_type="video/mp4")

The input must have its moov box before mdat (faststart), as render() writes it;
a pipe cannot seek to a trailing moov.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import threading
from pathlib import Path
from typing import AsyncIterator

from refstack.broken import is_broken
from refstack.render.errors import Busy, RenderFailed
from refstack.render.probe import check_readable

#: Reads and pipe buffers: large, so the Python hop costs little next to a bare pipe.
CHUNK_SIZE = 1 << 20
PIPE_SIZE = 1 << 20
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
STDERR_TAIL_BYTES = 16 * 1024


class RemuxLimiter:
    """A non-blocking counting semaphore for remux processes (thread- and loop-safe)."""

    def __init__(self, max_concurrent: int, retry_after: float = 5.0) -> None:
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent}")
        self.max_concurrent = max_concurrent
        self.retry_after = retry_after
        self._active = 0
        self._lock = threading.Lock()

    @property
    def active(self) -> int:
        return self._active

    def acquire(self) -> "_Slot":
        """Take a slot now or raise :class:`Busy` (never waits)."""
        with self._lock:
            if self._active >= self.max_concurrent and not is_broken("remux_no_cap"):
                raise Busy(f"{self._active} remux streams already running (cap {self.max_concurrent}); "
                           f"retry after {self.retry_after:g}s", active=self._active,
                           limit=self.max_concurrent, retry_after=self.retry_after)
            self._active += 1
        return _Slot(self)

    def _release(self) -> None:
        with self._lock:
            self._active -= 1


class _Slot:
    """Released exactly once: by the stream's ``finally`` or, if it never started, when collected."""

    def __init__(self, limiter: RemuxLimiter) -> None:
        self._limiter: RemuxLimiter | None = limiter

    def release(self) -> None:
        limiter, self._limiter = self._limiter, None
        if limiter is not None:
            limiter._release()

    def __del__(self) -> None:
        self.release()


def remux_argv(ffmpeg: str = "ffmpeg") -> list[str]:
    return [ffmpeg, "-hide_banner", "-v", "error", "-i", "pipe:0", "-c", "copy",
            "-movflags", "frag_keyframe+empty_moov", "-f", "mp4", "pipe:1"]


def open_remux(path: Path | str, *, limiter: RemuxLimiter | None = None, chunk_size: int = CHUNK_SIZE,
               ffmpeg: str = "ffmpeg") -> AsyncIterator[bytes]:
    """Check ``path`` and take a limiter slot now; return the async iterator of fragmented-MP4 bytes.

    Raises :class:`InputNotFound` / :class:`InputPermissionDenied` / :class:`Busy`
    before any byte is produced, so the API can still choose the status code.
    """
    path = Path(path)
    check_readable(path, "download")
    slot = limiter.acquire() if limiter is not None else None
    return _remux(path, slot, chunk_size, ffmpeg)


def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the whole group, at once
        except ProcessLookupError:
            pass


async def _drain_stderr(proc: asyncio.subprocess.Process, buf: bytearray) -> None:
    assert proc.stderr is not None
    while chunk := await proc.stderr.read(65536):
        buf += chunk
        del buf[: max(0, len(buf) - STDERR_TAIL_BYTES)]


def _pipe(size: int) -> tuple[int, int]:
    """A pipe with a large kernel buffer (F_SETPIPE_SZ): fewer, bigger reads and writes."""
    r, w = os.pipe()
    try:
        fcntl.fcntl(w, F_SETPIPE_SZ, size)
    except OSError:
        pass  # over /proc/sys/fs/pipe-max-size: keep the default 64 KiB
    return r, w


async def _remux(path: Path, slot: _Slot | None, chunk_size: int, ffmpeg: str) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    proc = transport = drainer = None
    r = w = -1
    try:
        r, w = _pipe(PIPE_SIZE)
        # The file itself becomes ffmpeg's stdin (pipe:0 reads it directly): no Python hop on the
        # input side; together with the 1 MiB output pipe this keeps us near a bare `ffmpeg < file | ...`.
        with open(path, "rb") as src:
            proc = await asyncio.create_subprocess_exec(
                *remux_argv(ffmpeg), stdin=src, stdout=w, stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        os.close(w)
        w = -1
        reader = asyncio.StreamReader(limit=4 * chunk_size)
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                                    os.fdopen(r, "rb", 0))
        r = -1  # owned by the transport now
        err = bytearray()
        drainer = asyncio.ensure_future(_drain_stderr(proc, err))
        while chunk := await reader.read(chunk_size):
            yield chunk
        rc = await proc.wait()
        await asyncio.gather(drainer, return_exceptions=True)
        if rc != 0:
            raise RenderFailed(f"remux of {str(path)!r} failed: ffmpeg exited {rc}",
                               err.decode("utf-8", "replace")[-4000:], path=str(path), returncode=rc)
    finally:
        # Client gone (aclose / cancellation / GC) or an error: kill first, synchronously,
        # so no ffmpeg is left blocked writing to a pipe nobody reads (the PeerTube pile-up).
        leave = is_broken("remux_leave_ffmpeg_on_disconnect")
        if proc is not None and not leave:
            _kill(proc)
        if drainer is not None and not drainer.done():
            drainer.cancel()
        if transport is not None and not leave:
            transport.close()
        for fd in (r, w):
            if fd >= 0:
                os.close(fd)
        if slot is not None:
            slot.release()
        if proc is not None and proc.returncode is None and not leave:
            await proc.wait()  # reap; if this await is cancelled too, asyncio's child watcher still reaps
