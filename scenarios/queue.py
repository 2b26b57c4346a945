"""Queue and workers (R §三.2, A §2)."""

from renderchaos.faults.spec import Described, Freeze, Kill, Partition, Stop
from renderchaos.platforms.base import Feature
from renderchaos.scenario import Runbook, Scenario
from renderchaos.wait import Wait
from scenarios.ai import AI_DEADLINE_S

WORKER_DOWN = Scenario(
    id="queue.worker_down",
    title="all workers stopped: jobs stay pending, then all complete after the restart",
    runbook=Runbook("A", "§2.1 任务一直处于 pending 状态"),
    tier="resilience",
    faults=(Stop("worker", index=None),),
    needs=("separate:worker",),
    symptom="jobs accepted but stay pending, none lost or failed",
    remedy="restart the workers (docker restart jointo-server-celery-ai)",
    detect=Wait(10.0),
    recover=Wait(120.0),
    catches=("worker_ack_early",),
)

WORKER_KILLED = Scenario(
    id="queue.worker_killed",
    title="the process rendering a job killed mid-task, another job queued: after the restart both end "
          "(redelivered and completed, or failed), none lost, no orphan ffmpeg",
    runbook=Runbook("R", "§一.2 内存不足 (Killed: 进程被系统终止)"),
    tier="resilience",
    faults=(Kill("worker"),),
    symptom="Killed: the worker process disappears mid-render",
    remedy="start the worker again (docker start); an unacknowledged task is delivered again (late ack)",
    detect=Wait(30.0),
    recover=Wait(120.0),
    catches=("worker_ack_early", "worker_double_charge", "worker_redelivery_charge_no_ledger"),
)

#: accepted jobs waiting in the queue while the broker restarts (A §2.1: durable queue, persistent messages)
QUEUED_THROUGH_RESTART = 4
BROKER_DOWN = Scenario(
    id="queue.broker_down",
    title="RabbitMQ restarted with jobs queued, stopped, then partitioned: every accepted job completes; "
          "submit answers 503 or queues durably; workers reconnect alone",
    runbook=Runbook("A", "§2.1 任务一直处于 pending 状态 (检查 RabbitMQ 状态)"),
    tier="resilience",
    faults=(Freeze("worker", index=None), Stop("broker"), Partition("broker")),
    symptom="submit answers 503 broker_unavailable (or 202 for a job that survives); queued jobs must survive "
            "a broker restart",
    remedy="start RabbitMQ / bring the route back; no worker restart",
    detect=Wait(20.0),
    recover=Wait(90.0),
    catches=("api_accept_when_broker_down", "worker_queue_not_durable", "api_publish_transient"),
)

WORKER_FROZEN = Scenario(
    id="queue.worker_frozen",
    title="a worker paused mid-task: its task is redelivered and completed elsewhere, once",
    runbook=Runbook("R", "§三.2 队列积压 (Worker卡死)"),
    tier="resilience",
    faults=(Described("the worker rendering a job frozen (docker pause) mid-render", ("containers:worker",)),),
    needs=(Feature.JOB_VIEWS.value, "separate:worker"),
    symptom="the broker drops the silent consumer (missed heartbeats) and redelivers its unacked task",
    remedy="the other worker completes it; unpause the frozen worker",
    detect=Wait(120.0),
    recover=Wait(120.0),
    catches=("worker_ack_early", "worker_double_charge", "worker_redelivery_charge_no_ledger"),
)

#: QueueBacklog (rules.yml: celery_queue_length > 1000) evaluated with its threshold scaled to a
#: burst that drains in well under a minute; the expression is the rule's.
BACKLOG_THRESHOLD = 30
BACKLOG = Scenario(
    id="queue.backlog",
    title="10x burst of jobs: QueueBacklog fires, added workers drain faster",
    runbook=Runbook("R", "§三.2 队列积压"),
    tier="resilience",
    faults=(Described(f"a burst of AI jobs (provider answers in 1 s each): queue > {BACKLOG_THRESHOLD}",
                      (Feature.AI_JOBS.value, Feature.METRICS.value, "provider_control", "scale:worker")),),
    symptom=f"celery_queue_length{{queue=\"ai\"}} > {BACKLOG_THRESHOLD} on /metrics (QueueBacklog condition)",
    remedy="add workers (two more worker containers)",
    detect=Wait(30.0),
    recover=Wait(120.0),
    catches=("worker_prefetch_hoard",),
)

TASK_TIMEOUT = Scenario(
    id="queue.task_timeout",
    title="AI provider slower than AI_TASK_TIMEOUT: job timeout at the limit, not earlier, not hanging",
    runbook=Runbook("A", "§2.3 任务超时"),
    tier="resilience",
    faults=(Described(f"the provider answers after 30 s; AI_TASK_TIMEOUT={AI_DEADLINE_S:g}s",
                      (Feature.AI_JOBS.value, "provider_control")),),
    symptom=f"AI job status timeout {AI_DEADLINE_S:g}s after it started",
    remedy="provider fast again; new AI jobs complete",
    detect=Wait(AI_DEADLINE_S + 30.0),
    recover=Wait(45.0),
    catches=("provider_no_deadline",),
)

#: leak tasks for worker.memory_leak: count x MiB each, kept alive until the child is recycled
LEAK_TASKS = 200
LEAK_MB = 2
MEMORY_LEAK = Scenario(
    id="worker.memory_leak",
    title="a leaking task type: worker children recycle and resident memory stays bounded",
    runbook=Runbook("A", "§5.2 Celery Worker 内存泄漏"),
    tier="resilience",
    faults=(Described(f"{LEAK_TASKS} tasks that each keep {LEAK_MB} MiB alive in their worker child",
                      (Feature.TEST_HOOKS.value,)),),
    symptom="RSS of a worker child grows with every task it runs",
    remedy="max-tasks-per-child recycles children (the configured remedy is always on)",
    detect=Wait(120.0),
    recover=Wait(60.0),
    catches=("worker_no_max_tasks_per_child",),
)
