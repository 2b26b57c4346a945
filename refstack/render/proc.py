"""Run ffmpeg/ffprobe in their own process group, watched, and always reaped.

R §一.3 (渲染超时 / 死锁): every child gets ``start_new_session=True`` so its pid is
its process-group id; on the total deadline, on a progress stall (SIGSTOPped or
frozen ffmpeg: no CPU, no progress), and on ANY exception raised in the waiting
thread (Celery's SoftTimeLimitExceeded included) the whole group gets SIGKILL
and is reaped before the exception leaves this module. No orphan ffmpeg.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from refstack.broken import is_broken
from refstack.render.errors import RenderTimeout

#: How much of stderr is kept (the tail is what explains a failure).
STDERR_TAIL_BYTES = 64 * 1024
#: How often the waiting thread wakes up to check deadline, stall and exit.
POLL_INTERVAL = 0.05
#: Never set: a timed wait between polls that is not a bare sleep.
_IDLE = threading.Event()


@dataclass(frozen=True)
class RunResult:
    """What one finished child did."""

    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: str
    elapsed: float
    max_rss_kb: int
    #: Last ``out_time`` ffmpeg reported (watched runs only), microseconds.
    out_us: int = 0

    def stderr_tail(self, lines: int = 15) -> str:
        return "\n".join(self.stderr.strip().splitlines()[-lines:])


class _Tail:
    """Keep the last ``limit`` bytes read from a pipe (a thread drains it so it never fills)."""

    def __init__(self, stream, limit: int, keep_all: bool = False) -> None:
        self._buf = bytearray()
        self._limit = limit
        self._keep_all = keep_all
        self._thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self._thread.start()

    def _drain(self, stream) -> None:
        try:
            while chunk := stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536):
                self._buf += chunk
                if not self._keep_all and len(self._buf) > self._limit:
                    del self._buf[: len(self._buf) - self._limit]
        except (OSError, ValueError):
            pass

    def join(self, timeout: float) -> bytes:
        self._thread.join(timeout)
        return bytes(self._buf)


class _Progress:
    """Parse ``-progress pipe:1`` key=value lines; remember when anything last advanced."""

    def __init__(self, stream) -> None:
        self.out_us = 0
        self.last_advance = time.monotonic()
        self.ended = False
        self.changed = threading.Event()
        self._seen: dict[str, str] = {}
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        try:
            for raw in stream:
                key, _, value = raw.decode("ascii", "replace").strip().partition("=")
                if key in ("out_time_us", "out_time_ms", "total_size", "frame"):
                    if self._seen.get(key) != value:
                        self._seen[key] = value
                        self.last_advance = time.monotonic()
                        if key in ("out_time_us", "out_time_ms") and value.lstrip("-").isdigit():
                            self.out_us = max(self.out_us, int(value))
                        self.changed.set()
                elif key == "progress" and value == "end":
                    self.ended = True
                    self.last_advance = time.monotonic()
                    self.changed.set()
        except (OSError, ValueError):
            pass

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the child's whole process group, then reap the child."""
    if proc.returncode is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # R §一.3: 终止进程组, not just the direct child
    except ProcessLookupError:
        pass
    _reap(proc, block=True)


def _reap(proc: subprocess.Popen, block: bool) -> int | None:
    """waitpid via wait4 so we also learn the child's peak RSS. Returns ru_maxrss or None."""
    try:
        pid, status, usage = os.wait4(proc.pid, 0 if block else os.WNOHANG)
    except ChildProcessError:
        if proc.returncode is None:
            proc.returncode = -1
        return 0
    if pid == 0:
        return None
    proc.returncode = os.waitstatus_to_exitcode(status)
    return int(usage.ru_maxrss)


def run(
    argv: Sequence[str],
    *,
    timeout: float,
    stall_timeout: float | None = None,
    expected_us: int | None = None,
    on_progress: Callable[[float], None] | None = None,
    keep_stdout: bool = False,
    what: str = "ffmpeg",
    cwd: str | os.PathLike[str] | None = None,
) -> RunResult:
    """Run ``argv`` to completion in its own process group and return what it did.

    With ``stall_timeout`` the command must be an ffmpeg invocation; ``-progress
    pipe:1 -nostats`` is added and the watchdog treats ``stall_timeout`` seconds
    without any advance (out_time, size, frame) as a hang. Raises
    :class:`RenderTimeout` (``reason`` = ``deadline`` | ``stall``); the group is
    dead and reaped whenever this function returns or raises.
    """
    argv = list(argv)
    watch = stall_timeout is not None
    if watch:
        argv[1:1] = ["-nostdin", "-progress", "pipe:1", "-nostats", "-stats_period", "0.25"]
    start = time.monotonic()
    deadline = start + timeout
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        start_new_session=True,  # R §一.3: own process group (preexec_fn=os.setsid in the runbook)
    )
    err = _Tail(proc.stderr, STDERR_TAIL_BYTES)
    progress = _Progress(proc.stdout) if watch else None
    out = None if watch else _Tail(proc.stdout, 0, keep_all=keep_stdout)
    max_rss = 0
    reported = -1.0
    leave_running = False
    try:
        while True:
            rss = _reap(proc, block=False)
            if rss is not None:
                max_rss = rss
                break
            now = time.monotonic()
            if now >= deadline:
                leave_running = is_broken("render_no_group_kill")
                raise RenderTimeout(
                    f"{what} exceeded its time limit of {timeout:.1f}s (pid {proc.pid}); "
                    "process group killed",
                    reason="deadline", limit=timeout, elapsed=now - start,
                )
            if progress is not None and not is_broken("render_no_watchdog"):
                idle = now - progress.last_advance
                if idle > stall_timeout:  # type: ignore[operator]
                    leave_running = is_broken("render_no_group_kill")
                    raise RenderTimeout(
                        f"{what} made no progress for {idle:.1f}s (stall limit {stall_timeout:.1f}s, "
                        f"pid {proc.pid}, last out_time {progress.out_us / 1e6:.2f}s): treated as hung, "
                        "process group killed",
                        reason="stall", limit=stall_timeout, elapsed=now - start,
                    )
            if progress is not None and on_progress is not None and expected_us:
                frac = min(1.0, progress.out_us / expected_us)
                if frac > reported:
                    reported = frac
                    on_progress(frac)  # runs in the waiting thread: exceptions land in `finally`
            wait = min(POLL_INTERVAL, max(0.0, deadline - now))
            if progress is not None:
                progress.changed.wait(wait)
                progress.changed.clear()
            else:
                _IDLE.wait(wait)
    except BaseException:
        if leave_running or is_broken("render_no_group_kill"):
            raise  # planted bug: the group is left running (orphan ffmpeg)
        kill_group(proc)
        raise
    finally:
        if proc.returncode is not None:
            if progress is not None:
                progress.join(1.0)
            stderr = err.join(1.0)
            stdout = out.join(1.0) if out is not None else b""
    return RunResult(
        argv=tuple(argv),
        returncode=int(proc.returncode),
        stdout=stdout,
        stderr=stderr.decode("utf-8", "replace"),
        elapsed=time.monotonic() - start,
        max_rss_kb=max_rss,
        out_us=progress.out_us if progress is not None else 0,
    )
