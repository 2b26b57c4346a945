"""No orphan ffmpeg after a worker child dies (SCENARIOS render.oom, queue.worker_frozen).

The render pipeline runs ffmpeg in its own process group and kills it on every
path it controls. It cannot when its process is SIGKILLed (OOM killer, Celery
hard time limit): the ffmpeg group then lives on as an orphan, burning CPU.

The Celery main process makes itself a child subreaper (``prctl
PR_SET_CHILD_SUBREAPER``), so those orphans are re-parented to it rather than to
init, and a small thread kills and reaps every ffmpeg/ffprobe that became its
direct child. Its only legitimate children are the pool processes (Python), so
nothing else is touched. Linux only; elsewhere it is a no-op.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import threading

log = logging.getLogger("refstack.worker.orphans")

PR_SET_CHILD_SUBREAPER = 36
ORPHAN_NAMES = ("ffmpeg", "ffprobe")


def become_subreaper() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def orphans_of(parent: int) -> list[tuple[int, str]]:
    """(pid, name) of ffmpeg/ffprobe processes whose parent is ``parent``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:
            continue
        name = stat[stat.find("(") + 1:stat.rfind(")")]
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 1 and int(fields[1]) == parent and name in ORPHAN_NAMES:
            found.append((int(entry), name))
    return found


def reap_once(parent: int | None = None) -> int:
    parent = os.getpid() if parent is None else parent
    killed = 0
    for pid, name in orphans_of(parent):
        try:
            os.killpg(pid, signal.SIGKILL)  # the pipeline starts ffmpeg as a session/group leader
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        killed += 1
        log.warning("killed orphaned %s pid %d left by a lost worker child", name, pid)
    return killed


def start_reaper(interval: float = 1.0) -> threading.Thread | None:
    if not become_subreaper():
        log.warning("cannot become a child subreaper: orphaned ffmpeg of killed children will not be reaped")
        return None
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            try:
                reap_once()
            except Exception:  # noqa: BLE001 - the reaper must not die
                log.exception("orphan reaper pass failed")

    t = threading.Thread(target=loop, name="orphan-reaper", daemon=True)
    t.start()
    return t
