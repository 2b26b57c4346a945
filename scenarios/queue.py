"""Queue and workers (R §三.2, A §2)."""

from renderchaos.scenario import Runbook, Scenario

WORKER_DOWN = Scenario(
    id="queue.worker_down",
    title="all workers stopped: jobs stay pending, then all complete after the restart",
    runbook=Runbook("A", "§2.1 任务一直处于 pending 状态"),
    tier="resilience",
    needs=("render_api", "containers"),
    fault="every render worker stopped (docker stop)",
    symptom="jobs accepted but stay pending, none lost or failed",
    remedy="restart the workers (docker restart jointo-server-celery-ai)",
    detect_s=10.0,
    recover_s=120.0,
    catches=("worker_ack_early",),
)
