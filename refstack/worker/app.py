"""The Celery app with the tasks registered, for ``celery -A refstack.worker.app`` and ``python -m refstack.worker``."""

from __future__ import annotations

from refstack.settings import Settings
from refstack.worker.celery_app import make_celery
from refstack.worker.tasks import register


def build():
    settings = Settings.from_env()
    app = make_celery(settings)
    register(app, settings)
    return app, settings


def __getattr__(name: str):  # lazy: `celery -A refstack.worker.app` finds `app` without import-time side effects
    if name == "app":
        return build()[0]
    raise AttributeError(name)
