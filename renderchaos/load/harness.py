"""Glue between a Locust run and a ScenarioRun: settings from the environment, the ledger feed,
the fault schedule of load.chaos. Plain functions; suites/test_load.py stays thin.

The schedule is the catalog's: ``scenarios/load.py`` declares the faults of load.chaos as typed
specs by role (:data:`scenarios.load.LOAD_CHAOS_FAULTS`: kill a ``worker``, partition the
``database``, stop the ``cache``, stop the ``broker``, the AI provider rate-limiting). They are
bound to the target here, in order; a fault whose role (or feature) the target lacks is skipped
and reported, the others run. A :class:`~renderchaos.faults.spec.Described` fault is performed
by the suite, which gives the concrete fault for it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

from renderchaos.errors import ConfigError, WaitTimeout
from renderchaos.faults.base import Fault
from renderchaos.faults.spec import Described, FaultSpec, Freeze, Kill, MemoryLimit, Partition, Stop, Toxic
from renderchaos.load.runner import LoadResult
from renderchaos.platforms.base import Account
from renderchaos.wait import Poll, wait_for

if TYPE_CHECKING:
    from renderchaos.load.runner import LocustProcess
    from renderchaos.scenario import ScenarioRun
    from renderchaos.target import Target


@dataclass(frozen=True)
class LoadSettings:
    """Size and pacing of a suite load run (env overrides, so a CI job can scale it)."""

    users: int = 12
    spawn_rate: float = 4.0
    run_time_s: float = 60.0  # load.baseline
    processes: int = -1  # one Locust worker process per core
    hold_s: float = 10.0  # load.chaos: how long each fault is held under load
    warmup_s: float = 15.0  # load.chaos: load before the first fault
    chaos_cap_s: float = 780.0  # load.chaos: Locust's own run-time cap (13 min)
    # bound of one adapter call in a Locust user: generous, so a slow answer counts as latency
    # (judged by the p95 thresholds), not as a client-side timeout that hides it and leaves a
    # job the platform may have accepted out of the ledger
    call_timeout_s: float = 30.0

    @classmethod
    def from_env(cls) -> "LoadSettings":
        def get(name: str, default: float) -> float:
            return float(os.environ.get(f"RENDERCHAOS_LOAD_{name.upper()}", default))

        d = cls()
        return cls(users=int(get("users", d.users)), spawn_rate=get("spawn_rate", d.spawn_rate),
                   run_time_s=get("run_time_s", d.run_time_s), processes=int(get("processes", d.processes)),
                   hold_s=get("hold_s", d.hold_s), warmup_s=get("warmup_s", d.warmup_s),
                   chaos_cap_s=get("chaos_cap_s", d.chaos_cap_s),
                   call_timeout_s=get("call_timeout_s", d.call_timeout_s))


def account_of(record: Mapping[str, Any]) -> Account | None:
    """The owner a Locust user wrote next to an accepted job (None: not recorded)."""
    a = record.get("account")
    if not isinstance(a, dict) or not a.get("id"):
        return None
    return Account(id=str(a["id"]), api_key=a.get("api_key"), credits=a.get("credits"), extra=dict(a.get("extra") or {}))


def feed_ledger(run: "ScenarioRun", result: LoadResult) -> int:
    """Every job a Locust user saw accepted goes into ``run.ledger`` with its owner (audited in
    steady_state_after: not lost, not stuck, charged once, a valid output, the owner's money)."""
    records = result.accepted()
    for rec in records:
        exp = rec.get("expected")
        run.ledger.accept_id(str(rec["job_id"]), account_of(rec), tuple(exp) if exp else None,  # type: ignore[arg-type]
                             kind=str(rec.get("kind") or "render"))
    return len(records)


# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OneAfterAnother:
    """A fault spec for the catalog: these faults, injected and healed one after another under
    load, each only where the target has what it needs (the others are skipped and reported).
    Needs nothing by itself: a target with none of them skips the scenario naming what is
    missing (:func:`chaos_schedule`)."""

    faults: tuple[FaultSpec, ...]

    def needs(self) -> tuple[str, ...]:
        return ()

    def describe(self) -> str:
        return "one after another, each where the target allows: " + "; ".join(f.describe() for f in self.faults)

    def bind(self, target: "Target") -> Fault:
        raise ConfigError("a fault schedule is bound one fault at a time: use renderchaos.load.harness.chaos_schedule")


@dataclass
class ScheduledFault:
    name: str  # short label for the timeline and the per-fault figures ("worker killed")
    spec: FaultSpec  # the catalog's spec
    remedy: str  # what healing it means, in runbook words
    make: Callable[[], Fault]  # the concrete fault bound to the target


@dataclass
class Schedule:
    faults: list[ScheduledFault]
    skipped: list[str]  # "<name>: target lacks [...]"

    def describe(self) -> str:
        run = ", ".join(f.name for f in self.faults) or "none"
        return f"faults in order: {run}" + (f"; skipped: {'; '.join(self.skipped)}" if self.skipped else "")


def fault_name(spec: FaultSpec) -> str:
    """A short label for the timeline and the per-fault figures ("worker killed")."""
    role = getattr(spec, "role", "")
    if isinstance(spec, Kill):
        return f"{role} killed"
    if isinstance(spec, Stop):
        return f"{role} #{spec.index} stopped" if spec.index is not None else f"{role} stopped"
    if isinstance(spec, Partition):
        return f"{role} partitioned"
    if isinstance(spec, Freeze):
        return f"{role} frozen"
    if isinstance(spec, Toxic):
        return f"{role} {spec.type}"
    if isinstance(spec, MemoryLimit):
        return f"{role} memory {spec.limit}"
    return spec.describe()


def remedy_of(spec: FaultSpec) -> str:
    role = getattr(spec, "role", "")
    if isinstance(spec, (Kill, Stop)):
        return f"start the {role} container(s) again"
    if isinstance(spec, Partition):
        return f"heal the partition (the {role} route back up)"
    if isinstance(spec, Freeze):
        return f"thaw the {role} container"
    if isinstance(spec, Toxic):
        return f"remove the toxic from the {role} route"
    if isinstance(spec, MemoryLimit):
        return f"restore the {role} memory limit"
    return f"undo: {spec.describe()}"


def chaos_schedule(target: "Target", specs: tuple[FaultSpec, ...] | OneAfterAnother,
                   concrete: Mapping[FaultSpec, Callable[[], Fault]] | None = None) -> Schedule:
    """The faults of load.chaos in catalog order, bound to ``target`` by role. A fault whose
    needs the target lacks (``containers:cache``, ``fault_proxy:database``, a platform
    feature...) is skipped and reported. ``concrete`` gives the fault for each Described spec
    (the suite builds those: provider behaviour, test hooks)."""
    if isinstance(specs, OneAfterAnother):
        specs = specs.faults
    concrete = dict(concrete or {})
    out, skipped = [], []
    for spec in specs:
        name = fault_name(spec)
        missing = target.missing(*spec.needs())
        if missing:
            skipped.append(f"{name}: target {target.name!r} lacks {missing}")
            continue
        if isinstance(spec, Described):
            if spec not in concrete:
                raise ConfigError(f"load.chaos: '{spec.describe()}' is performed by the suite, but it gave no "
                                  "concrete fault for it (chaos_schedule(..., concrete={spec: factory}))")
            make = concrete[spec]
        else:
            make = (lambda s=spec: s.bind(target))  # type: ignore[misc]
        out.append(ScheduledFault(name, spec, remedy_of(spec), make))
    return Schedule(out, skipped)


def hold(proc: "LocustProcess", seconds: float, what: str) -> bool:
    """Scenario step: keep the fault for ``seconds`` under load. Written as a bounded wait for the
    absence of Locust exiting; False if the load generator stopped during the hold."""
    try:
        wait_for(lambda: not proc.running(), what=f"Locust exiting while {what}", timeout=seconds, poll=Poll(0.5))
    except WaitTimeout:
        return True
    return False


def now() -> float:
    """Wall-clock time, the clock of Locust's CSV history (fault windows are matched against it)."""
    return time.time()
