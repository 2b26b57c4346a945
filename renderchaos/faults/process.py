"""Process faults inside a container: one process frozen with SIGSTOP (no CPU, pipes open).

Unlike :class:`~renderchaos.faults.container.Frozen` (the whole container's cgroup), this
freezes just the process a scenario picks, e.g. the ffmpeg a worker is waiting on, so the
worker itself stays alive to notice (R §一.3 progress watchdog).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from renderchaos.errors import FaultInjectionError
from renderchaos.faults.container import Proc, exec_in, processes
from renderchaos.wait import Poll, wait_for

if TYPE_CHECKING:
    from renderchaos.provisioning.stack.services import Service


def is_render_ffmpeg(p: Proc) -> bool:
    """An ffmpeg the pipeline watches (``-progress pipe:1``): a render step, not a probe."""
    return p.args.split(" ", 1)[0].endswith("ffmpeg") and "-progress" in p.args and p.stat[:1] != "Z"


@dataclass
class ProcessStopped:
    """SIGSTOP the first process in one of ``services`` that ``match`` picks (waits up to
    ``find_timeout`` s for it to appear); healed by SIGCONT if it is still there."""

    services: list["Service"]
    match: Callable[[Proc], bool] = is_render_ffmpeg
    find_timeout: float = 30.0
    target: tuple["Service", Proc] | None = None

    def describe(self) -> str:
        if self.target:
            return f"SIGSTOP pid {self.target[1].pid} in {self.target[0].name}: {self.target[1].args[:80]}"
        return "SIGSTOP a render ffmpeg"

    def _find(self) -> tuple["Service", Proc] | None:
        for s in self.services:
            for p in processes(s):
                if self.match(p):
                    return s, p
        return None

    def inject(self) -> None:
        self.target = wait_for(self._find, what="a render ffmpeg to SIGSTOP", timeout=self.find_timeout,
                               poll=Poll(0.1))
        service, proc = self.target
        res = exec_in(service, ["kill", "-STOP", str(proc.pid)])
        if res.exit_code != 0:
            raise FaultInjectionError(f"kill -STOP {proc.pid} in {service.name}: {res.output[:200]}",
                                      service=service.name)

    def stopped(self) -> bool:
        """True while the target is alive and in state T (stopped)."""
        if self.target is None:
            return False
        service, proc = self.target
        return any(p.pid == proc.pid and p.stat[:1] == "T" for p in processes(service))

    def alive(self) -> bool:
        if self.target is None:
            return False
        service, proc = self.target
        return any(p.pid == proc.pid and p.stat[:1] != "Z" for p in processes(service))

    def heal(self) -> None:
        if self.target is None or not self.target[0].state().get("Running") or not self.alive():
            return
        service, proc = self.target
        exec_in(service, ["kill", "-CONT", str(proc.pid)])


_INITS = ("podman-init", "docker-init", "tini", "catatonit", "dumb-init", "init")


def _is_init(p: Proc) -> bool:
    return p.args.split(" ", 1)[0].rsplit("/", 1)[-1] in _INITS


@dataclass
class OomTakesTheWorker:
    """The kernel's OOM killer takes the process that runs a render, not only its ffmpeg.

    Under a memory limit the OOM killer picks the biggest process, ffmpeg, and the worker lives on
    to report ``resource_exhausted``: its task is never redelivered. Real OOM kills also take the
    worker itself (R §一.2: "Killed"). While injected, this raises the OOM score of the parent of
    every render ffmpeg in ``services`` (the worker process running the task; never the container's
    init or main process) to the maximum, so
    each delivery of the task dies with its worker and redelivery (late ack, bounded attempts) is
    what the scenario sees. Raising a score needs no privilege; nothing is lowered on heal (each
    redelivery runs in a fresh worker process)."""

    services: list["Service"]
    match: Callable[[Proc], bool] = is_render_ffmpeg
    interval: float = 0.1
    marked: set[int] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def describe(self) -> str:
        return f"OOM score of the process running each render raised to the maximum ({len(self.marked)} marked)"

    def _mark_once(self) -> None:
        for s in self.services:
            if not s.state().get("Running"):
                continue
            procs = processes(s)
            # The container's main process is never marked: an ffmpeg orphaned by an earlier kill is
            # re-parented to it (a subreaper), and killing it kills the container, which is
            # queue.worker_killed's case, not this one's.
            top = {p.host_pid for p in procs if p.pid == 1}
            if any(p.pid == 1 and _is_init(p) for p in procs):  # --init: the main process is its child
                top |= {p.host_pid for p in procs if p.ppid in top}
            for p in procs:
                if self.match(p) and p.ppid not in self.marked and p.ppid not in top:
                    try:
                        Path(f"/proc/{p.ppid}/oom_score_adj").write_text("1000")
                        self.marked.add(p.ppid)
                    except OSError:
                        pass  # exited meanwhile

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._mark_once()
            except Exception:  # noqa: BLE001 - a container restarting under us: next round
                pass
            self._stop.wait(self.interval)  # the watch's pace, not a wait for a condition

    def inject(self) -> None:
        if not Path("/proc/self/oom_score_adj").exists():
            raise FaultInjectionError("this kernel has no /proc/PID/oom_score_adj: cannot steer the OOM killer")
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="oom-takes-the-worker", daemon=True)
        self._thread.start()

    def heal(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
