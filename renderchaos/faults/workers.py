"""Scale a stack's worker pool for a scenario (queue.backlog: "add workers").

:class:`ExtraWorkers` starts ``count`` more worker containers built exactly like the stack's
own (same image, environment, volumes, memory limit; labelled with the stack's context so the
reaper finds them) and removes them when healed. The containers come from the target's
``new_workers`` (the reference stack's, or a compose stack's: capability ``scale:worker``). It is
a Fault so ``ScenarioRun.inject()`` removes the containers on the way out whatever happens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from renderchaos.errors import FaultInjectionError, ProvisioningError
from renderchaos.wait import Deadline

if TYPE_CHECKING:
    from renderchaos.provisioning.stack.services import Service

READY_TIMEOUT = 60.0  # s, an extra worker consuming from the broker


@dataclass
class ExtraWorkers:
    new_workers: Callable[[int], list[Any]]  # Target.new_workers: unstarted containers like the stack's workers
    count: int = 1
    where: str = "the stack"
    ready_timeout: float = READY_TIMEOUT
    started: list[Any] = field(default_factory=list)

    def describe(self) -> str:
        return f"{self.count} extra worker(s) on {self.where}"

    def inject(self) -> None:
        for w in self.new_workers(self.count):
            self.started.append(w)
            try:
                w.start()
            except ProvisioningError as exc:
                raise FaultInjectionError(f"could not start extra worker {w.name}: {exc}") from exc
        deadline = Deadline.after(self.ready_timeout)
        for w in self.started:
            try:
                w.wait_ready(deadline)
            except ProvisioningError as exc:
                raise FaultInjectionError(f"extra worker {w.name} not ready: {exc}") from exc

    def heal(self) -> None:
        for w in self.started:
            w.remove()
        self.started.clear()


@dataclass
class FrozenMidTask:
    """Like :class:`renderchaos.faults.container.Frozen`, but a freezer that could not settle
    ("unable to freeze": runc gives up while a process of a busy worker is mid-syscall) is tried
    again until ``timeout``; only then does the injection fail."""

    service: "Service"
    timeout: float = 10.0

    def describe(self) -> str:
        return f"freeze {self.service.name} mid-task"

    def inject(self) -> None:
        from renderchaos.faults.container import pause
        from renderchaos.wait import Poll, wait_for

        def attempt() -> bool:
            if self.service.state().get("Paused"):
                return True
            pause(self.service)
            return True

        try:
            wait_for(attempt, what=f"{self.service.name} to freeze", timeout=self.timeout,
                     poll=Poll(0.2, tolerate=(FaultInjectionError,)))
        except Exception as exc:  # WaitTimeout: every attempt failed
            raise FaultInjectionError(f"could not freeze {self.service.name}: {exc}",
                                      service=self.service.name) from exc

    def heal(self) -> None:
        from renderchaos.faults.container import unpause

        if self.service.state().get("Paused"):
            unpause(self.service)
