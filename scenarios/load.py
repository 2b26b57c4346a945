"""Load (R §三: slow renders, queue backlog, slow queries): Locust alone and under faults.

Tier: Scenario.tier allows only gate/resilience, so both are "resilience" and the suite adds
``pytest.mark.load`` (select with ``-m load`` or ``--chaos-profile load``).
"""

from renderchaos.faults.spec import Described, Input, Kill, Partition, Stop, Toxic  # noqa: F401
from renderchaos.platforms.base import Feature  # noqa: F401
from renderchaos.scenario import Runbook, Scenario
from renderchaos.wait import Wait

#: load.chaos: the faults the Locust run goes through, one after another (renderchaos/load/harness.py)
LOAD_CHAOS_FAULTS = (
    Kill("worker", 0),
    Partition("database"),
    Stop("cache"),
    Stop("broker"),
    Described("the AI provider rate-limits every key", ("provider_control",)),
)

BASELINE = Scenario(
    id="load.baseline",
    title="Locust submit / poll / download / AI mix meets the configured thresholds",
    runbook=Runbook("R", "§三 性能问题 (渲染慢、队列积压、慢查询)"),
    faults=(Described("none: steady load from Locust users (renderchaos/load/locustfile.py)"),),
    needs=(Feature.DOWNLOAD.value,),
    tier="load",
    symptom="a threshold broken: failure ratio, p95/p99 per request type, or throughput "
            "(renderchaos/load/thresholds.toml)",
    remedy="R §三: find the slow path (submit, queries, queue) and fix it; thresholds hold again",
    recover=Wait(120.0),
    catches=("api_slow_submit",),
)

CHAOS = Scenario(
    id="load.chaos",
    title="the same load while catalog faults hit one after another; recovery after each heal",
    runbook=Runbook("R", "§三 性能问题 + §四 依赖故障 (负载下的故障注入)"),
    faults=LOAD_CHAOS_FAULTS,
    needs=(Feature.DOWNLOAD.value, "provider_control"),
    tier="load",
    symptom="errors / latency while each fault lasts",
    remedy="each fault's prescribed remedy (start the worker, heal the partition, start Redis, "
           "start RabbitMQ, reset the provider)",
    recover=Wait(90.0),
    catches=("api_slow_submit", "api_accept_when_broker_down"),
)
