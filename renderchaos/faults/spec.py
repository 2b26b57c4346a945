"""Faults as data: what a scenario declares in the catalog, bound to a target at run time.

A spec names its fault in platform terms (a toxic on the ``database`` role's route, every
``worker`` stopped, the render ffmpeg SIGSTOPped) and says what it needs from the target
(``fault_proxy:database``, ``containers:worker``). ``spec.bind(target)`` returns the concrete
:class:`~renderchaos.faults.base.Fault` for that deployment; ``ScenarioRun.inject(spec)`` does
that for you. The catalog is then the single place a scenario's faults are defined: suites
inject ``scenario.faults`` (or one of them), they do not build the same fault again inline.

    spec                    needs                   binds to
    Toxic(role, type, ...)  fault_proxy:<role>      RouteToxic on the role's route
    Partition(role)         fault_proxy:<role>      RouteDown (listener closed, connections cut)
    Stop(role[, index])     containers:<role>       Stopped (graceful), started again on heal
    Kill(role[, index])     containers:<role>       Killed (SIGKILL by default)
    Freeze(role[, index])   containers:<role>       Frozen (cgroup freezer)
    MemoryLimit(role, ...)  containers:<role>       MemoryLimited (kernel OOM above it)
    StopRender(role)        containers:<role>       ProcessStopped: the render ffmpeg SIGSTOPped
    FillStorage(role)       containers:<role>       StorageFilled: the output volume at ENOSPC
    Input(what)             -                       BadInput: the scenario's own requests
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from renderchaos.faults.base import Fault

if TYPE_CHECKING:
    from renderchaos.target import Target


@runtime_checkable
class FaultSpec(Protocol):
    def needs(self) -> tuple[str, ...]: ...

    def describe(self) -> str: ...

    def bind(self, target: "Target") -> Fault: ...


@dataclass
class AllOf:
    """Several faults injected together and healed together (every worker stopped, say)."""

    faults: list[Fault]
    label: str

    def describe(self) -> str:
        return self.label

    def inject(self) -> None:
        for f in self.faults:
            f.inject()

    def heal(self) -> None:
        errors = []
        for f in reversed(self.faults):
            try:
                f.heal()
            except Exception as exc:  # noqa: BLE001 - every part gets its heal; errors raised together
                errors.append(f"{f.describe()}: {exc}")
        if errors:
            from renderchaos.errors import FaultHealError

            raise FaultHealError("; ".join(errors), fault=self.label)


# ---------------------------------------------------------------------------------------
# network (fault proxy)
@dataclass(frozen=True)
class Toxic:
    role: str
    type: str  # latency, bandwidth, timeout, reset_peer, slicer, limit_data, slow_close
    attributes: dict[str, Any] = field(default_factory=dict)
    stream: str = "downstream"
    toxicity: float = 1.0
    label: str = ""

    def needs(self) -> tuple[str, ...]:
        return (f"fault_proxy:{self.role}",)

    def describe(self) -> str:
        return self.label or f"toxic {self.type} {self.attributes} on the {self.role} route"

    def bind(self, target: "Target") -> Fault:
        from renderchaos.faults.network import RouteToxic

        return RouteToxic(target.proxy_url or "", target.route(self.role), self.type, stream=self.stream,
                          toxicity=self.toxicity, attributes=dict(self.attributes))


@dataclass(frozen=True)
class Partition:
    role: str
    label: str = ""

    def needs(self) -> tuple[str, ...]:
        return (f"fault_proxy:{self.role}",)

    def describe(self) -> str:
        return self.label or f"partition: the {self.role} route down"

    def bind(self, target: "Target") -> Fault:
        from renderchaos.faults.network import RouteDown

        return RouteDown(target.proxy_url or "", target.route(self.role))


# ---------------------------------------------------------------------------------------
# containers
def _pick(target: "Target", role: str, index: int | None) -> list[Any]:
    return target.containers(role) if index is None else [target.container(role, index)]


@dataclass(frozen=True)
class Stop:
    role: str
    index: int | None = None  # None: every container of the role
    grace: float = 5.0
    ready_timeout: float = 60.0

    def needs(self) -> tuple[str, ...]:
        return (f"containers:{self.role}",)

    def describe(self) -> str:
        return f"stop {'every' if self.index is None else f'#{self.index}'} {self.role} container"

    def bind(self, target: "Target") -> Fault:
        from renderchaos.faults.container import Stopped

        return AllOf([Stopped(c, grace=self.grace, ready_timeout=self.ready_timeout)
                      for c in _pick(target, self.role, self.index)], self.describe())


@dataclass(frozen=True)
class Kill:
    role: str
    index: int | None = 0
    signal: str = "SIGKILL"
    ready_timeout: float = 60.0

    def needs(self) -> tuple[str, ...]:
        return (f"containers:{self.role}",)

    def describe(self) -> str:
        return f"{self.signal} {'every' if self.index is None else f'#{self.index}'} {self.role} container"

    def bind(self, target: "Target") -> Fault:
        from renderchaos.faults.container import Killed

        return AllOf([Killed(c, signal=self.signal, ready_timeout=self.ready_timeout)
                      for c in _pick(target, self.role, self.index)], self.describe())


@dataclass(frozen=True)
class Freeze:
    role: str
    index: int | None = 0

    def needs(self) -> tuple[str, ...]:
        return (f"containers:{self.role}",)

    def describe(self) -> str:
        return f"freeze {'every' if self.index is None else f'#{self.index}'} {self.role} container"

    def bind(self, target: "Target") -> Fault:
        from renderchaos.faults.container import Frozen

        return AllOf([Frozen(c) for c in _pick(target, self.role, self.index)], self.describe())


@dataclass(frozen=True)
class MemoryLimit:
    role: str
    limit: str  # e.g. "350m"
    index: int | None = 0

    def needs(self) -> tuple[str, ...]:
        return (f"containers:{self.role}",)

    def describe(self) -> str:
        return f"memory limit {self.limit} on the {self.role} container"

    def bind(self, target: "Target") -> Fault:
        from renderchaos.faults.container import MemoryLimited

        return AllOf([MemoryLimited(c, self.limit) for c in _pick(target, self.role, self.index)], self.describe())


@dataclass(frozen=True)
class StopRender:
    """SIGSTOP the first render ffmpeg found in a container of ``role`` (R §一.3 原因4)."""

    role: str = "worker"
    find_timeout: float = 30.0

    def needs(self) -> tuple[str, ...]:
        return (f"containers:{self.role}",)

    def describe(self) -> str:
        return f"SIGSTOP the render's ffmpeg in a {self.role} container"

    def bind(self, target: "Target") -> Fault:
        from renderchaos.faults.process import ProcessStopped

        return ProcessStopped(target.containers(self.role), find_timeout=self.find_timeout)


@dataclass(frozen=True)
class FillStorage:
    """Fill the output volume to ENOSPC from inside a container of ``role`` that mounts it."""

    role: str = "api"
    mount: str | None = None  # default: the platform's setting ``storage_mount`` or /data/storage
    leave_bytes: int = 0  # room left: a render then runs out of space mid-write

    def needs(self) -> tuple[str, ...]:
        return (f"containers:{self.role}",)

    def describe(self) -> str:
        room = f", {self.leave_bytes // 1024} KiB left" if self.leave_bytes else ""
        return f"output volume full (ENOSPC{room}), filled from the {self.role} container"

    def bind(self, target: "Target") -> Fault:
        from renderchaos.faults.storage import STORAGE_MOUNT, StorageFilled

        mount = self.mount or target.platform.endpoint.settings.get("storage_mount") or STORAGE_MOUNT
        return StorageFilled(target.container(self.role), mount=mount, leave_bytes=self.leave_bytes)


# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Input:
    """The fault is what the scenario sends (bad credentials, malformed bodies, a burst)."""

    what: str

    def needs(self) -> tuple[str, ...]:
        return ()

    def describe(self) -> str:
        return f"bad input: {self.what}"

    def bind(self, target: "Target") -> Fault:
        from renderchaos.faults.api import BadInput

        return BadInput(self.what)


@dataclass(frozen=True)
class Described:
    """A fault the scenario performs itself through platform operations or test hooks (a
    render longer than its limit, a hold on the database pool, a provider switched to 429s):
    declared here so the catalog says what it is and what it needs; the suite injects the
    concrete fault."""

    what: str
    requires: tuple[str, ...] = ()

    def needs(self) -> tuple[str, ...]:
        return self.requires

    def describe(self) -> str:
        return self.what

    def bind(self, target: "Target") -> Fault:
        from renderchaos.errors import ConfigError

        raise ConfigError(f"'{self.what}' is performed by the scenario itself; inject the concrete fault")
