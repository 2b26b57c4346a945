"""Load (R §三: slow renders, queue backlog, slow queries): Locust alone and under faults.

The Locust users drive the target's platform adapter (renderchaos/load/locustfile.py), so both
scenarios run against any platform with an adapter. Optional groups (AI jobs, downloads) join
the load only when the adapter declares them.

Tier: both are "load" and carry ``pytest.mark.load`` (select with ``-m load`` or
``--chaos-profile load``).
"""

from renderchaos.faults.spec import Described, Kill, Partition, Stop
from renderchaos.load.harness import OneAfterAnother
from renderchaos.platforms.base import Feature
from renderchaos.scenario import Runbook, Scenario
from renderchaos.wait import Wait

#: load.chaos: the faults the Locust run goes through, one after another, bound to the target by
#: role (renderchaos/load/harness.py chaos_schedule); one whose role the target lacks is skipped
#: and reported
PROVIDER_RATE_LIMIT = Described("the AI provider rate-limits every key", (Feature.AI_JOBS.value, "provider_control"))
LOAD_CHAOS_FAULTS = (
    Kill("worker", 0),
    Partition("database"),
    Stop("cache"),
    Stop("broker"),
    PROVIDER_RATE_LIMIT,
)

BASELINE = Scenario(
    id="load.baseline",
    title="Locust submit / poll / download / list / AI mix meets the configured thresholds",
    runbook=Runbook("R", "§三 性能问题 (渲染慢、队列积压、慢查询)"),
    faults=(Described("none: steady load from Locust users (renderchaos/load/locustfile.py)"),),
    tier="load",
    symptom="a threshold broken: failure ratio, p95/p99 per operation, or throughput "
            "(renderchaos/load/thresholds.toml)",
    remedy="R §三: find the slow path (submit, queries, queue) and fix it; thresholds hold again",
    recover=Wait(120.0),
    catches=("api_slow_submit",),
)

CHAOS = Scenario(
    id="load.chaos",
    title="the same load while catalog faults hit one after another; recovery after each heal",
    runbook=Runbook("R", "§三 性能问题 + §四 依赖故障 (负载下的故障注入)"),
    faults=(OneAfterAnother(LOAD_CHAOS_FAULTS),),
    tier="load",
    symptom="errors / latency while each fault lasts",
    remedy="each fault's prescribed remedy (start the worker, heal the partition, start Redis, "
           "start RabbitMQ, reset the provider)",
    recover=Wait(90.0),
    catches=("api_slow_submit", "api_accept_when_broker_down"),
)
