"""AI provider (A §3, A §2.3): the provider misbehaves, the AI jobs and the client stay sane."""

from renderchaos.faults.spec import Described, Partition
from renderchaos.platforms.base import Feature
from renderchaos.scenario import Runbook, Scenario
from renderchaos.wait import Wait

#: AI_TASK_TIMEOUT of the dedicated stack the deadline scenarios run on (queue.task_timeout,
#: ai.provider_partition): short, so "at the deadline" is seconds, not the default minute.
AI_DEADLINE_S = 8.0
DEADLINE_STACK = {"env": {"AI_TASK_TIMEOUT": f"{AI_DEADLINE_S:g}"}}

KEY_INVALID = Scenario(
    id="ai.provider_key_invalid",
    title="provider answers 401: the job fails with a clear message, no retry storm",
    runbook=Runbook("A", "§3.1 API Key 无效"),
    faults=(Described("the provider rejects every key (401 Invalid API Key)", (Feature.AI_JOBS.value, "provider_control")),),
    tier="gate",
    symptom="AI job failed provider_unauthorized naming the key; one provider call per job",
    remedy="fix the key (provider back to normal); new jobs complete",
    detect=Wait(20.0),
    recover=Wait(30.0),
    catches=("provider_retry_storm", "worker_no_refund"),
)

MODEL_NOT_FOUND = Scenario(
    id="ai.model_not_found",
    title="model unavailable at the provider: job failed model_not_found, models list reflects it",
    runbook=Runbook("A", "§3.2 模型不可用"),
    faults=(Described("the provider marks one model unavailable (404 model_not_found)", (Feature.AI_JOBS.value, "provider_control")),),
    tier="gate",
    symptom="the models list shows it unavailable; a job on it fails model_not_found, not retried",
    remedy="the model is back; the list shows it available and a job on it completes",
    detect=Wait(20.0),
    recover=Wait(30.0),
    catches=("worker_no_refund",),
)

RATE_LIMIT = Scenario(
    id="ai.provider_rate_limit",
    title="429 on one key: the client rotates to another key and the jobs complete",
    runbook=Runbook("A", "§3.3 配额超限"),
    faults=(Described("the provider answers 429 (Retry-After) on the key the client uses first", (Feature.AI_JOBS.value, "provider_control")),),
    tier="gate",
    symptom="jobs complete on another configured key; the throttled key is not hammered",
    remedy="quota back (provider normal)",
    detect=Wait(25.0),
    recover=Wait(30.0),
    catches=("provider_no_key_rotation",),
)

PARTITION = Scenario(
    id="ai.provider_partition",
    title="provider unreachable: retries with backoff inside the task deadline, then failed; recovers after heal",
    runbook=Runbook("A", "§2.2 任务失败 / §2.3 任务超时"),
    faults=(Partition("provider"),),
    needs=(Feature.AI_JOBS.value,),
    tier="resilience",
    symptom=f"AI job failed provider_unavailable (or timeout) at AI_TASK_TIMEOUT={AI_DEADLINE_S:g}s after "
            "several backed-off attempts",
    remedy="route back up; new AI jobs complete",
    detect=Wait(AI_DEADLINE_S + 30.0),
    recover=Wait(45.0),
    catches=("provider_no_deadline",),
)
