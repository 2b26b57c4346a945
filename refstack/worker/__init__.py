"""Celery workers of the reference stack: ``python -m refstack.worker``."""
