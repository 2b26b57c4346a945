"""Accepted jobs survive a broker restart (A §2.1): durable queues and persistent messages.

A RabbitMQ of the test's own (restarting the session stack's broker would disturb every other
test); the stack's own Celery configuration and publish() put one job in the render queue, the
broker restarts, and the job must still be there. Planted: a non-durable queue is gone with its
message; a transient message is dropped from a durable queue.
"""

from __future__ import annotations

import uuid
from typing import Iterator

import pytest
from kombu import Connection

from renderchaos.faults import container as cf
from renderchaos.provisioning.stack.context import StackContext
from renderchaos.provisioning.stack.services import RabbitMQ
from renderchaos.wait import Deadline
from refstack.settings import Settings
from refstack.worker.celery_app import QUEUES, TASK_RENDER, make_celery, publish

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def rabbitmq(request: pytest.FixtureRequest) -> Iterator[RabbitMQ]:
    from renderchaos.plugin import new_context

    images = request.getfixturevalue("chaos_images")
    ctx: StackContext = new_context(request.getfixturevalue("chaos_state"))  # labelled, reaped with the run
    mq = RabbitMQ(ctx, images["rabbitmq"])
    try:
        mq.start()
        mq.wait_ready(Deadline.after(60))
        yield mq
    finally:
        mq.remove()


def _waiting(url: str, queue: str) -> int:
    """Messages waiting in ``queue``; 0 when the queue does not exist."""
    with Connection(url, connect_timeout=5) as conn:
        try:
            _, count, _ = conn.channel().queue_declare(queue=queue, passive=True)
        except conn.channel_errors:  # 404 NOT_FOUND: the queue is gone
            return 0
        return count


@pytest.mark.parametrize("variant", [None, "worker_queue_not_durable", "api_publish_transient"])
def test_a_waiting_job_survives_a_broker_restart(rabbitmq, planted, variant):
    if variant:
        planted(variant)
    url = rabbitmq.url()
    with Connection(url, connect_timeout=5) as conn:  # a clean slate: the previous case's queues
        channel = conn.channel()
        for q in QUEUES:
            channel.queue_delete(queue=q)
    app = make_celery(Settings.from_env({"BROKER_URL": url}))
    with app.connection_for_write() as conn:  # declared as the workers and the API declare them
        for queue in app.conf.task_queues:
            queue.bind(conn.default_channel).declare()
    try:
        publish(app, TASK_RENDER, str(uuid.uuid4()), timeout=10.0)
    finally:
        app.close()
    assert _waiting(url, "render") == 1
    cf.restart(rabbitmq, deadline=60)
    survived = _waiting(url, "render")
    if variant is None:
        assert survived == 1, "an accepted job was lost by a broker restart"
    else:
        assert survived == 0, f"{variant}: expected the restart to drop the waiting job"
