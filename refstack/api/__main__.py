"""``python -m refstack.api``: migrate the schema, then serve with gunicorn + uvicorn workers.

Binds ``API_HOST:API_PORT`` with ``WEB_CONCURRENCY`` worker processes. The
schema is created/migrated once here, before the workers fork, under a
Postgres advisory lock (several API or worker processes may start at once).
Per-request metrics are aggregated across the workers through
prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile

from refstack.settings import Settings, SettingsError

log = logging.getLogger("refstack.api")


def _multiproc_dir() -> None:
    """Must happen before prometheus_client is imported anywhere in this process tree."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        shutil.rmtree(path, ignore_errors=True)  # stale files of a previous run would add up
        os.makedirs(path, exist_ok=True)
    else:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="refstack-metrics-")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"refstack.api: {exc}", file=sys.stderr)
        return 2
    _multiproc_dir()
    from refstack.broken import active
    from refstack.db import make_engine, migrate, wait_for_database

    active()
    engine = make_engine(settings, application_name="refstack-api-migrate")
    wait_for_database(engine, settings.db_startup_timeout)
    migrate(engine)
    engine.dispose()

    from gunicorn.app.base import BaseApplication

    class Server(BaseApplication):
        def load_config(self) -> None:
            cfg = {
                "bind": f"{settings.api_host}:{settings.api_port}",
                "workers": settings.web_concurrency,
                "worker_class": "uvicorn.workers.UvicornWorker",
                "timeout": 60,
                "graceful_timeout": 10,
                "keepalive": 5,
                "accesslog": None,
                "errorlog": "-",
                "child_exit": _child_exit,
            }
            for key, value in cfg.items():
                self.cfg.set(key, value)

        def load(self):
            from refstack.api.app import create_app

            return create_app(settings)

    Server().run()
    return 0


def _child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
