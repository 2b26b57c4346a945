"""``python -m refstack.worker``: migrate the schema (idempotent), then run a Celery worker.

Hostname from ``WORKER_NAME``; queues from ``WORKER_QUEUES``; concurrency and
recycling from ``WORKER_CONCURRENCY`` / ``WORKER_MAX_TASKS_PER_CHILD``.
"""

from __future__ import annotations

import logging
import sys

from refstack.settings import Settings, SettingsError


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"refstack.worker: {exc}", file=sys.stderr)
        return 2
    from refstack.broken import active
    from refstack.db import make_engine, migrate, wait_for_database
    from refstack.worker.celery_app import make_celery
    from refstack.worker.tasks import register, worker_name

    active()  # an unknown REFSTACK_BROKEN name stops us here
    engine = make_engine(settings, application_name="refstack-worker-migrate")
    wait_for_database(engine, settings.db_startup_timeout)
    migrate(engine)
    engine.dispose()

    app = make_celery(settings)
    register(app, settings)
    from refstack.worker.orphans import start_reaper

    start_reaper()  # orphans of SIGKILLed children are re-parented here and killed
    args = ["worker", "-n", worker_name(), "-Q", ",".join(settings.worker_queues),
            "-c", str(settings.worker_concurrency), "-P", "prefork", "--loglevel", "INFO",
            "--without-gossip", "--without-mingle"]
    if app.conf.worker_max_tasks_per_child:
        args += ["--max-tasks-per-child", str(app.conf.worker_max_tasks_per_child)]
    app.worker_main(args + list(argv or []))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
