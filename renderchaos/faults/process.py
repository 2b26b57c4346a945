"""Process faults inside a container: one process frozen with SIGSTOP (no CPU, pipes open).

Unlike :class:`~renderchaos.faults.container.Frozen` (the whole container's cgroup), this
freezes just the process a scenario picks, e.g. the ffmpeg a worker is waiting on, so the
worker itself stays alive to notice (R §一.3 progress watchdog).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from renderchaos.errors import FaultInjectionError
from renderchaos.faults.container import Proc, exec_in, processes
from renderchaos.wait import Poll, wait_for

if TYPE_CHECKING:
    from renderchaos.stack.services import Service


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
