"""Monitoring and alerting (R §七 监控告警, A 监控和告警 2)."""

from renderchaos.faults.spec import Described, Partition, Stop, Toxic
from renderchaos.platforms.base import Feature
from renderchaos.scenario import Runbook, Scenario
from renderchaos.wait import Wait

ALERTS = Scenario(
    id="monitor.alerts",
    title="the runbook's alert rules fire while each fault lasts and clear after recovery",
    runbook=Runbook("R", "§七 监控告警 (关键告警规则)"),
    # in turn, each alert's fault (the suite injects these, in this order)
    faults=(Stop("api"),  # ServiceDown
            Partition("database", label="the database route down (under traffic)"),  # HighErrorRate
            Toxic("provider", "latency", {"latency": 1500, "jitter": 0},
                  label="the AI provider 1.5 s slower (under traffic)"),  # SlowAPIResponse
            Stop("worker"),  # QueueBacklog (with a burst of renders)
            Described("AI jobs for a model the provider does not have", (Feature.AI_JOBS.value,)),  # HighTaskFailureRate
            Described("render inputs that fail the platform's media check, then good renders",
                      (Feature.ASSETS.value,))),  # LowRenderSuccessRate
    # sidecars: Prometheus runs as a container of the stack's context (a stack renderchaos started)
    needs=(Feature.METRICS.value, "sidecars"),
    tier="resilience",  # stops the API, the workers and the database in turn
    symptom="ServiceDown, HighErrorRate, SlowAPIResponse, QueueBacklog, HighTaskFailureRate, "
            "LowRenderSuccessRate (real Prometheus over the API's /metrics)",
    remedy="heal each fault (start the API / database route / workers, remove the toxic, "
           "stop the failing inputs and render good ones)",
    detect=Wait(45.0),
    recover=Wait(60.0),
    catches=("metrics_no_5xx_count",),
)

RULES_EVALUATE = Scenario(
    id="monitor.alerts.task_failure",
    title="gate: the runbook's rules load in Prometheus, and HighTaskFailureRate fires and clears",
    runbook=Runbook("A", "监控和告警 2 (AI 任务失败率过高)"),
    faults=(Described("a burst of AI jobs for a model the provider does not have", (Feature.AI_JOBS.value, "provider_control", "sidecars")),),
    needs=(Feature.METRICS.value,),
    tier="gate",
    symptom="HighTaskFailureRate firing",
    remedy="stop sending them; the failure rate falls back",
    detect=Wait(30.0),
    recover=Wait(45.0),
    catches=("metrics_no_task_failures",),
    canary=False,
)
