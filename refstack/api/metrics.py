"""Prometheus metrics of the API (R §七, A 监控和告警).

Two kinds:

* per-request metrics (``http_requests_total{method,path,status}``,
  ``http_request_duration_seconds``) recorded in each server process. Under
  gunicorn they are aggregated across worker processes with prometheus_client's
  multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set by ``python -m refstack.api``).
* state metrics computed at scrape time from Postgres and RabbitMQ, so they are
  the same whichever process answers and whichever worker ran the job:
  ``celery_queue_length{queue}``, ``render_success_rate``,
  ``ai_task_failures_total``, ``render_task_failures_total``,
  ``refstack_jobs{kind,status}``, ``refstack_dependency_up{dependency}``.

``path`` is the route template (``/v1/videos/{job_id}``), never the raw URL,
so label cardinality stays bounded under fuzzing.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector
from sqlalchemy import text

from refstack.broken import is_broken
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

HTTP_REQUESTS = Counter("http_requests_total", "HTTP requests answered", ["method", "path", "status"])
HTTP_LATENCY = Histogram("http_request_duration_seconds", "HTTP request latency", ["method", "path"],
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))

#: window of LowRenderSuccessRate (R §七: for 15m)
SUCCESS_WINDOW = "15 minutes"


class StateCollector(Collector):
    """Scrape-time gauges from the database and the broker, cached for ``ttl`` seconds."""

    def __init__(self, engine: Engine, queue_lengths: Callable[[], dict[str, int]], ttl: float = 2.0) -> None:
        self.engine = engine
        self.queue_lengths = queue_lengths
        self.ttl = ttl
        self._cache: tuple[float, list] = (0.0, [])
        self._lock = threading.Lock()

    def describe(self) -> Iterable:
        return []  # unchecked collector: families are produced at scrape time

    def collect(self) -> Iterable:
        with self._lock:
            at, families = self._cache
            if time.monotonic() - at > self.ttl:
                families = self._compute()
                self._cache = (time.monotonic(), families)
        return list(families)

    def _compute(self) -> list:
        up = GaugeMetricFamily("refstack_dependency_up", "1 when the API can reach the dependency",
                               labels=["dependency"])
        out: list = [up]
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(text("SELECT kind, status, count(*) FROM jobs GROUP BY kind, status")).all()
                recent = conn.execute(text(
                    "SELECT count(*) FILTER (WHERE status = 'completed'), count(*) FROM jobs "
                    "WHERE kind = 'render' AND status IN ('completed', 'failed', 'timeout') "
                    "AND error_code IS DISTINCT FROM 'broker_unavailable' "
                    f"AND finished_at > now() - interval '{SUCCESS_WINDOW}'")).one()
            up.add_metric(["database"], 1)
            jobs = GaugeMetricFamily("refstack_jobs", "jobs by kind and status", labels=["kind", "status"])
            failures = {"ai": 0, "render": 0}
            for kind, status, n in rows:
                jobs.add_metric([kind, status], n)
                if status in ("failed", "timeout") and not is_broken("metrics_no_task_failures"):
                    failures[kind] = failures.get(kind, 0) + n  # planted bug above: never counted
            out.append(jobs)
            # A 告警: rate(ai_task_failures_total[5m]) > 0.1
            out.append(CounterMetricFamily("ai_task_failures", "AI jobs that ended failed or timeout",
                                           value=failures["ai"]))
            out.append(CounterMetricFamily("render_task_failures", "render jobs that ended failed or timeout",
                                           value=failures["render"]))
            ok, total = recent
            # R §七 LowRenderSuccessRate: no finished render in the window counts as healthy (1.0)
            out.append(GaugeMetricFamily("render_success_rate",
                                         f"completed / finished render jobs over the last {SUCCESS_WINDOW}",
                                         value=(ok / total) if total else 1.0))
            out.append(GaugeMetricFamily("render_jobs_finished_window", "render jobs finished in the window",
                                         value=total))
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail because the DB is down
            log.warning("metrics: database unavailable: %s", exc)
            up.add_metric(["database"], 0)
        try:
            lengths = self.queue_lengths()
            q = GaugeMetricFamily("celery_queue_length", "messages ready in the queue (R §七 QueueBacklog)",
                                  labels=["queue"])
            for name, n in lengths.items():
                q.add_metric([name], n)
            out.append(q)
            up.add_metric(["broker"], 1)
        except Exception as exc:  # noqa: BLE001
            log.warning("metrics: broker unavailable: %s", exc)
            up.add_metric(["broker"], 0)
        return out


def render_latest(state: StateCollector | None) -> bytes:
    """The /metrics body: per-request metrics of every process + the state metrics once."""
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    if state is not None:
        extra = CollectorRegistry(auto_describe=False)
        extra.register(state)
        body += generate_latest(extra)
    return body
