"""Load (R §三: slow renders, queue backlog, slow queries): Locust alone and under faults.

Tier: Scenario.tier allows only gate/resilience, so both are "resilience" and the suite adds
``pytest.mark.load`` (select with ``-m load`` or ``--chaos-profile load``).
"""

from renderchaos.scenario import Runbook, Scenario

BASELINE = Scenario(
    id="load.baseline",
    title="Locust submit / poll / download / AI mix meets the configured thresholds",
    runbook=Runbook("R", "§三 性能问题 (渲染慢、队列积压、慢查询)"),
    tier="load",
    needs=("render_api", "ai_api", "download"),
    fault="none: steady load from Locust users (renderchaos/load/locustfile.py)",
    symptom="a threshold broken: failure ratio, p95/p99 per request type, or throughput "
            "(renderchaos/load/thresholds.toml)",
    remedy="R §三: find the slow path (submit, queries, queue) and fix it; thresholds hold again",
    recover_s=120.0,
    catches=("api_slow_submit",),
)

CHAOS = Scenario(
    id="load.chaos",
    title="the same load while catalog faults hit one after another; recovery after each heal",
    runbook=Runbook("R", "§三 性能问题 + §四 依赖故障 (负载下的故障注入)"),
    tier="load",
    needs=("render_api", "ai_api", "download", "containers", "fault_proxy", "provider_control"),
    fault="under load: worker SIGKILLed, Postgres partitioned, Redis stopped, RabbitMQ restarted, "
          "AI provider rate-limiting every key",
    symptom="errors / latency while each fault lasts",
    remedy="each fault's prescribed remedy (start the worker, heal the partition, start Redis, "
           "start RabbitMQ, reset the provider)",
    recover_s=90.0,
    catches=("api_slow_submit", "api_accept_when_broker_down"),
)
