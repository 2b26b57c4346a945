"""The Celery application: RabbitMQ, durable queues, persistent messages, late acks.

Shared by the workers (which run the tasks) and the API (which only publishes
with :func:`publish`). There is no result backend: job state lives in Postgres.

Delivery guarantees (A §2, R §三.2):

* queues ``render``, ``ai``, ``maintenance`` are durable, messages persistent,
  and the API publishes with publisher confirms, so an accepted job survives a
  broker restart;
* ``task_acks_late`` + ``task_reject_on_worker_lost``: a worker killed
  mid-task (OOM, frozen and restarted) leaves the message to be redelivered;
* prefetch 1: a busy worker does not hoard jobs another could run;
* soft/hard time limits and ``worker_max_tasks_per_child`` (A §5.2).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from celery import Celery
from kombu import Exchange, Queue

from refstack.broken import is_broken
from refstack.settings import Settings

QUEUES = ("render", "ai", "maintenance")
TASK_RENDER = "refstack.render"
TASK_AI = "refstack.ai"
TASK_LEAK = "refstack.leak"
TASK_QUEUE = {TASK_RENDER: "render", TASK_AI: "ai", TASK_LEAK: "maintenance"}
#: Redis keys ``<prefix><worker name>:<pid>``: which worker process is on which job (GET /admin/workers)
HEARTBEAT_PREFIX = "refstack:worker:"


class PublishError(Exception):
    """The broker did not confirm a message within the publish timeout."""


def make_celery(settings: Settings) -> Celery:
    app = Celery("refstack", broker=settings.broker_url, set_as_current=False)
    exchange = Exchange("refstack", type="direct", durable=True)
    app.conf.update(
        task_queues=[Queue(q, exchange, routing_key=q, durable=not is_broken("worker_queue_not_durable"))
                     for q in QUEUES],
        task_default_queue="render",
        task_default_exchange="refstack",
        task_default_routing_key="render",
        task_default_delivery_mode="persistent",
        task_routes={name: {"queue": q, "routing_key": q} for name, q in TASK_QUEUE.items()},
        task_ignore_result=True,
        result_backend=None,
        task_serializer="json",
        accept_content=["json"],
        # late ack: a lost worker's task goes back to the queue (R §三.2, SCENARIOS queue.worker_frozen)
        task_acks_late=not is_broken("worker_ack_early"),
        task_reject_on_worker_lost=not is_broken("worker_ack_early"),
        # planted bug worker_prefetch_hoard: busy workers hoard the queue, added workers idle (queue.backlog)
        worker_prefetch_multiplier=1000 if is_broken("worker_prefetch_hoard") else 1,
        worker_max_tasks_per_child=None if is_broken("worker_no_max_tasks_per_child")
        else settings.worker_max_tasks_per_child,
        worker_concurrency=settings.worker_concurrency,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_hijack_root_logger=False,
        # reconnect forever by ourselves after a broker outage (queue.broker_down)
        broker_connection_retry=True,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_connection_timeout=max(1.0, settings.publish_timeout),
        broker_heartbeat=10,
        broker_pool_limit=4,
        broker_transport_options={"confirm_publish": True},
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_enable_remote_control=True,
    )
    return app


_PUBLISHERS: ThreadPoolExecutor | None = None


def _publishers() -> ThreadPoolExecutor:
    global _PUBLISHERS
    if _PUBLISHERS is None:
        _PUBLISHERS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="publish")
    return _PUBLISHERS


def publish(app: Celery, task: str, job_id: str, timeout: float) -> None:
    """Send one job to its durable queue and wait for the broker's confirm; :class:`PublishError` if not.

    The whole attempt (reconnect, one retry, publisher confirm) is bounded by
    ``timeout``: a frozen or partitioned broker costs the client ``timeout``
    seconds and a 503, never a hung request. A publish that completes after
    we gave up is harmless: the job is already marked failed and the worker
    skips terminal jobs.
    """
    def send() -> None:
        app.send_task(
            task, args=[job_id], queue=TASK_QUEUE[task], routing_key=TASK_QUEUE[task],
            retry=True,
            retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2},
            timeout=timeout, confirm_timeout=timeout,
            delivery_mode=1 if is_broken("api_publish_transient") else 2,  # 2 = persistent
        )

    future = _publishers().submit(send)
    try:
        future.result(timeout=timeout)
    except FutureTimeout as exc:
        future.cancel()
        raise PublishError(f"broker did not confirm the job within {timeout:.1f}s (PUBLISH_TIMEOUT)") from exc
    except Exception as exc:  # kombu / amqp / socket errors all mean "not confirmed"
        raise PublishError(f"broker did not accept the job: {type(exc).__name__}: {exc}") from exc
