"""Glue between a Locust run and a ScenarioRun: settings from the environment, the ledger feed,
the fault schedule of load.chaos. Plain functions; suites/test_load.py stays thin."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from renderchaos.errors import WaitTimeout
from renderchaos.faults.base import Fault
from renderchaos.load.runner import LoadResult
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

    @classmethod
    def from_env(cls) -> "LoadSettings":
        def get(name: str, default: float) -> float:
            return float(os.environ.get(f"RENDERCHAOS_LOAD_{name.upper()}", default))

        d = cls()
        return cls(users=int(get("users", d.users)), spawn_rate=get("spawn_rate", d.spawn_rate),
                   run_time_s=get("run_time_s", d.run_time_s), processes=int(get("processes", d.processes)),
                   hold_s=get("hold_s", d.hold_s), warmup_s=get("warmup_s", d.warmup_s),
                   chaos_cap_s=get("chaos_cap_s", d.chaos_cap_s))


def feed_ledger(run: "ScenarioRun", result: LoadResult) -> int:
    """Every job a Locust user saw accepted goes into ``run.ledger`` (audited in steady_state_after)."""
    clients: dict[str, Any] = {}
    for rec in result.accepted():
        api = None
        if rec["kind"] == "render":
            key = rec["api_key"]
            api = clients.get(key) or clients.setdefault(key, run.client(key))
        exp = rec.get("expected")
        run.ledger.accept_id(rec["job_id"], api, tuple(exp) if exp else None)  # type: ignore[arg-type]
    return len(result.accepted())


@dataclass
class ScheduledFault:
    name: str  # catalog id of the fault, e.g. "db.partition"
    make: Callable[[], Fault]
    remedy: str
    needs: tuple[str, ...]


def chaos_schedule(target: "Target") -> list[ScheduledFault]:
    """The faults of load.chaos, in order, each with its prescribed remedy (SCENARIOS.md)."""
    from renderchaos.faults.container import Killed, Stopped
    from renderchaos.faults.network import RouteDown
    from renderchaos.faults.provider import ProviderBehaviour

    stack = target.stack
    out = [
        ScheduledFault("queue.worker_killed", lambda: Killed(stack.workers[0]),  # type: ignore[union-attr]
                       "restart the worker (docker start)", ("containers",)),
        ScheduledFault("db.partition", lambda: RouteDown(target.toxiproxy_url or "", target.routes["postgres"]),
                       "heal the partition (route back up)", ("fault_proxy",)),
        ScheduledFault("redis.down", lambda: Stopped(stack.redis, grace=2),  # type: ignore[union-attr]
                       "start Redis", ("containers",)),
        ScheduledFault("queue.broker_restart", lambda: Stopped(stack.rabbitmq, grace=5),  # type: ignore[union-attr]
                       "start RabbitMQ again (restart)", ("containers",)),
        ScheduledFault("ai.provider_rate_limit",
                       lambda: ProviderBehaviour(target.provider_control_url or "", {"rate_limited_keys": ["*"]}),
                       "provider back to normal (quota restored)", ("provider_control",)),
    ]
    return [f for f in out if target.has(*f.needs) and (stack is not None or "containers" not in f.needs)]


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
