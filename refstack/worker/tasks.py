"""The Celery tasks: render, AI, and a task that leaks memory on purpose.

Every task takes only a job id; the job record in Postgres is the truth.
Idempotency under redelivery (late ack, worker lost, frozen worker):

* ``claim`` is a conditional UPDATE pending/running -> running that counts the
  attempt; a terminal job is left alone (no second render, no second charge);
* the output path is a function of the job id, written by the pipeline to a
  temporary file and renamed into place, so a second render replaces the
  first instead of adding a second output;
* completion and failure are conditional UPDATEs; failure refunds through the
  ledger's UNIQUE(job_id, kind), so at most once;
* a job delivered more than ``RENDER_MAX_ATTEMPTS`` times (each delivery died
  with its worker, e.g. OOM) ends ``failed`` / ``resource_exhausted`` (R §一.2).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from celery import Celery
from celery.exceptions import Reject, SoftTimeLimitExceeded
from sqlalchemy import text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from refstack.broken import is_broken
from refstack.db import ops
from refstack.db.engine import DatabaseError, make_engine, run_transaction
from refstack.db.schema import credits, messages
from refstack.settings import Settings
from refstack.worker.celery_app import HEARTBEAT_PREFIX, TASK_AI, TASK_LEAK, TASK_RENDER

log = logging.getLogger("refstack.worker")

LEAK_KEY = "refstack:leak:observations"
#: how long a finishing write keeps retrying a down database before the message is requeued
FINISH_DB_PATIENCE = 60.0
#: a worker process's heartbeat key lives this long unless refreshed (R §八: every key has a TTL)
HEARTBEAT_TTL = 60
#: refresh the heartbeat at most this often while a job runs
HEARTBEAT_EVERY = 10.0
#: after a Redis error, no heartbeat for this long (a partitioned Redis must not slow the render)
HEARTBEAT_BACKOFF = 10.0


class JobCancelled(Exception):
    """The user cancelled the job while it ran (seen by the progress callback)."""


class _Deadline:
    def __init__(self, at: float) -> None:
        self.at = at

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())


class Runtime:
    """Per-process state: one engine per (forked) child, created on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pid = -1
        self._engine = None
        self._redis = None
        self.beat_at = -1e9  # monotonic time of the last heartbeat written
        self.redis_quiet_until = -1e9  # no heartbeat before this monotonic time (Redis failed)

    @property
    def engine(self):
        if self._pid != os.getpid():
            self._pid = os.getpid()
            s = self.settings
            small = Settings(**{**{f: getattr(s, f) for f in s.__dataclass_fields__},
                                "db_pool_size": 2, "db_max_overflow": 2})
            self._engine = make_engine(small, application_name="refstack-worker")
            self._redis = None
        return self._engine

    @property
    def redis(self):
        if self._redis is None or self._pid != os.getpid():
            import redis

            self._redis = redis.Redis.from_url(self.settings.redis_url, socket_connect_timeout=1, socket_timeout=1)
        return self._redis

    def tx(self, fn: Callable) -> Any:
        return run_transaction(self.engine, fn, retries=self.settings.db_deadlock_retries)

    def tx_patient(self, fn: Callable) -> Any:
        """A finishing write: retry a down database for a while, then requeue the message."""
        deadline = time.monotonic() + FINISH_DB_PATIENCE
        while True:
            try:
                return self.tx(fn)
            except DatabaseError as exc:
                if time.monotonic() >= deadline:
                    log.error("database still unavailable after %.0fs (%s); requeueing", FINISH_DB_PATIENCE, exc)
                    raise Reject(str(exc), requeue=True) from exc
                time.sleep(1.0)  # retry interval while the database is down


def worker_name() -> str:
    return os.environ.get("WORKER_NAME") or f"refstack@{socket.gethostname()}"


def heartbeat(rt: Runtime, job_id: uuid.UUID, kind: str, *, force: bool = False) -> bool:
    """Record in Redis which worker process is on which job (GET /admin/workers); best effort.

    Written when a job is claimed and refreshed every ``HEARTBEAT_EVERY`` s of progress; the key
    expires ``HEARTBEAT_TTL`` s after the last write, so a dead process drops out by itself.
    Returns whether the key was written.
    """
    now = time.monotonic()
    if now < rt.redis_quiet_until or (not force and now - rt.beat_at < HEARTBEAT_EVERY):
        return False
    rt.beat_at = now
    key = f"{HEARTBEAT_PREFIX}{worker_name()}:{os.getpid()}"
    value = json.dumps({"worker": worker_name(), "pid": os.getpid(), "job_id": str(job_id), "kind": kind,
                        "at": time.time()})
    try:
        rt.redis.set(key, value, ex=None if is_broken("worker_heartbeat_no_ttl") else HEARTBEAT_TTL)
    except Exception as exc:  # noqa: BLE001 - observation only: never fail or slow a job for it
        rt.redis_quiet_until = now + HEARTBEAT_BACKOFF
        log.warning("heartbeat not stored (next try in %.0fs): %s", HEARTBEAT_BACKOFF, exc)
        return False
    return True


def _claim(rt: Runtime, job_id: uuid.UUID, kind: str) -> Any:
    try:
        row = rt.tx(lambda conn: ops.claim(conn, job_id, f"{worker_name()}:{os.getpid()}"))
    except DatabaseError as exc:
        # the job stays pending/running; hand the message back rather than lose it (db.down),
        # after a pause so a database outage is not a hot redelivery loop
        time.sleep(2.0)
        raise Reject(f"cannot claim job {job_id}: {exc}", requeue=True) from exc
    if row is None:
        log.info("job %s is terminal or unknown: nothing to do (redelivery)", job_id)
        return None
    if row.kind != kind:
        log.error("job %s is a %s job delivered to the %s task", job_id, row.kind, kind)
        return None
    if is_broken("worker_double_charge") and row.cost:
        # planted bug: charge on every delivery, outside the ledger's exactly-once guard
        rt.tx(lambda conn: conn.execute(update(credits).where(credits.c.user_id == row.user_id)
                                        .values(balance=credits.c.balance - row.cost)))
    elif is_broken("worker_redelivery_charge_no_ledger") and row.cost and row.attempts > 1:
        # planted bug: a redelivery "charges again" straight on the balance; no ledger row
        rt.tx(lambda conn: conn.execute(update(credits).where(credits.c.user_id == row.user_id)
                                        .values(balance=credits.c.balance - row.cost)))
    heartbeat(rt, job_id, kind, force=True)
    return row


def _fail(rt: Runtime, job_id: uuid.UUID, status: str, code: str, message: str) -> None:
    refund = not is_broken("worker_no_refund")
    done = rt.tx_patient(lambda conn: ops.finish_unsuccessfully(conn, job_id, status, code, message,
                                                                from_statuses=("running",), refund_it=refund))
    log.info("job %s -> %s (%s): %s%s", job_id, status, code, message[:200], "" if done else " [already final]")


# ================================================================ render


def _spec(settings: Settings, params: dict[str, Any]):
    from refstack.render import TemplateSpec

    colours = params.get("colours") or []
    assets = Path(settings.assets_dir)
    data = params.get("data") or {}
    return TemplateSpec(
        title=params.get("title") or params.get("template_id") or "",
        background_color=colours[0] if colours else "black",
        text_color=colours[1] if len(colours) > 1 else "white",
        width=int(params.get("width") or 640), height=int(params.get("height") or 360),
        duration=float(params.get("duration") or 5.0), fps=int(params.get("fps") or 25),
        background_video=assets / params["input_asset"] if params.get("input_asset") else None,
        audio=assets / params["audio_asset"] if params.get("audio_asset") else None,
        encoder=settings.render_encoder,
        preset=data.get("preset") if data.get("preset") in ("ultrafast", "superfast", "veryfast", "faster",
                                                            "fast", "medium") else "veryfast",
    )


def render_job(spec: Any, out_path: Path, progress_cb: Callable[[float], None], limits: Any):
    """The one seam to the render pipeline (refstack.render.render)."""
    from refstack.render import render

    return render(spec, out_path, limits=limits, on_progress=progress_cb)


def run_render(rt: Runtime, job_id_raw: str) -> None:
    s = rt.settings
    job_id = uuid.UUID(job_id_raw)
    row = _claim(rt, job_id, "render")
    if row is None:
        return
    if row.attempts > s.render_max_attempts and not is_broken("worker_no_attempt_limit"):
        _fail(rt, job_id, "failed", "resource_exhausted",
              f"gave up after {row.attempts - 1} deliveries that each died with their worker "
              "(memory limit / OOM kill?); render in smaller segments or with more memory")
        return
    out = Path(s.storage_dir) / f"{job_id}.mp4"
    if row.attempts > 1 and out.is_file() and out.stat().st_size > 0:
        # a previous delivery renamed the verified output into place and died before recording it
        done = rt.tx_patient(lambda conn: ops.complete(conn, job_id, output_path=str(out),
                                                       output_bytes=out.stat().st_size,
                                                       encoder_used=row.encoder_used or s.render_encoder))
        log.info("job %s: output already in place from an earlier delivery; completed=%s", job_id, done)
        return

    from refstack.render import RenderError, RenderLimits

    unlimited = is_broken("worker_no_time_limit")
    limits = RenderLimits(total_timeout=1e9 if unlimited else s.render_time_limit,
                          stall_timeout=1e9 if unlimited else s.render_stall_timeout,
                          segment_seconds=s.render_segment_seconds)
    last = {"at": 0.0}

    def progress(fraction: float) -> None:
        heartbeat(rt, job_id, "render")
        now = time.monotonic()
        if now - last["at"] < 1.0 and fraction < 1.0:
            return
        last["at"] = now
        try:
            status = rt.tx(lambda conn: ops.set_progress(conn, job_id, fraction * 100.0))
        except DatabaseError as exc:
            log.warning("job %s: progress not recorded (%s)", job_id, exc)
            return
        if status == "cancelled":
            raise JobCancelled(str(job_id))

    try:
        spec = _spec(s, row.params or {})
        result = render_job(spec, out, progress, limits)
    except JobCancelled:
        log.info("job %s cancelled while rendering; ffmpeg killed", job_id)
        return
    except SoftTimeLimitExceeded:
        _fail(rt, job_id, "timeout", "timeout", f"render exceeded the worker's time limit ({s.render_time_limit:.0f}s)")
        return
    except RenderError as exc:
        if exc.code == "storage_full" and is_broken("worker_complete_without_output"):
            rt.tx_patient(lambda conn: ops.complete(conn, job_id, output_path=str(out), encoder_used=s.render_encoder))
            return
        status = "timeout" if exc.code == "timeout" else "failed"
        message = exc.message + (f"\n{exc.detail}" if exc.detail else "")
        _fail(rt, job_id, status, exc.code, message)
        return
    except Exception as exc:  # noqa: BLE001 - any other failure still ends the job, refunded
        log.exception("job %s: unexpected render failure", job_id)
        _fail(rt, job_id, "failed", "render_failed", f"{type(exc).__name__}: {exc}")
        return
    if not is_broken("worker_complete_without_output") and not (out.is_file() and out.stat().st_size > 0):
        _fail(rt, job_id, "failed", "storage_full", f"render reported success but {out} is missing")
        return
    size = out.stat().st_size if out.exists() else 0
    meta = {"requested_encoder": getattr(result, "requested_encoder", None),
            "encoder_fallback_reason": getattr(result, "encoder_fallback_reason", None),
            "segments": getattr(result, "segments", None), "duration": getattr(result, "duration", None),
            "tolerant_retry": getattr(result, "tolerant_retry", None),
            "peak_rss_kb": getattr(result, "peak_rss_kb", None)}
    done = rt.tx_patient(lambda conn: ops.complete(conn, job_id, output_path=str(out), output_bytes=size,
                                                   encoder_used=result.encoder, result=meta))
    log.info("job %s completed with %s (%d bytes); recorded=%s", job_id, result.encoder, size, done)


# ================================================================ AI


def run_ai(rt: Runtime, job_id_raw: str) -> None:
    s = rt.settings
    job_id = uuid.UUID(job_id_raw)
    row = _claim(rt, job_id, "ai")
    if row is None:
        return
    # the deadline runs from the job's first start, across redeliveries (A §2.3)
    started = row.started_at or datetime.now(timezone.utc)
    left = s.ai_task_timeout - (datetime.now(timezone.utc) - started).total_seconds()
    if left <= 0:
        _fail(rt, job_id, "timeout", "timeout", f"AI job exceeded AI_TASK_TIMEOUT={s.ai_task_timeout:g}s")
        return
    params = row.params or {}
    from refstack.worker.ai import generate

    try:
        answer = generate(s, params.get("model", ""), params.get("prompt", ""), _Deadline(time.monotonic() + left))
    except SoftTimeLimitExceeded:
        _fail(rt, job_id, "timeout", "timeout", f"AI job exceeded AI_TASK_TIMEOUT={s.ai_task_timeout:g}s")
        return
    except Exception as exc:  # noqa: BLE001 - provider errors carry .code; anything else is provider_error
        code = getattr(exc, "code", None) or "provider_error"
        status = "timeout" if code == "timeout" else "failed"
        message = getattr(exc, "message", None) or str(exc)
        if code == "timeout":
            message = f"AI provider did not answer within AI_TASK_TIMEOUT={s.ai_task_timeout:g}s: {message}"
        _fail(rt, job_id, status, code, message)
        return
    output = answer.get("output") if isinstance(answer, dict) else str(answer)
    result = {"output": output, "model": params.get("model"),
              "usage": answer.get("usage") if isinstance(answer, dict) else None}

    def finish(conn):
        if not ops.complete(conn, job_id, result=result):
            return False
        if row.conversation_id:
            conn.execute(pg_insert(messages).values(conversation_id=row.conversation_id, job_id=job_id,
                                                    role="assistant", content=str(output or ""))
                         .on_conflict_do_nothing(index_elements=["job_id", "role"],
                                                 index_where=text("job_id IS NOT NULL")))
        return True

    rt.tx_patient(finish)


# ================================================================ leak (worker.memory_leak)

_LEAKED: list[bytearray] = []
_TASKS_IN_CHILD = {"n": 0}


def _rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return -1.0


def run_leak(rt: Runtime, mb: int) -> dict[str, Any]:
    """Keep ``mb`` MiB alive for the life of this child: only recycling bounds it (A §5.2)."""
    _LEAKED.append(bytearray(b"\x01") * (int(mb) * 1024 * 1024))  # touched pages: really resident
    _TASKS_IN_CHILD["n"] += 1
    obs = {"pid": os.getpid(), "rss_mb": round(_rss_mb(), 1), "held_mb": len(_LEAKED) * int(mb),
           "tasks_in_child": _TASKS_IN_CHILD["n"], "worker": worker_name(), "at": time.time()}
    try:
        pipe = rt.redis.pipeline()
        pipe.lpush(LEAK_KEY, json.dumps(obs))
        pipe.ltrim(LEAK_KEY, 0, 999)
        pipe.expire(LEAK_KEY, 3600)  # R §八: keys written by tasks carry TTLs
        pipe.execute()
    except Exception as exc:  # noqa: BLE001 - observation only
        log.warning("leak observation not stored: %s", exc)
    return obs


# ================================================================ registration


def register(app: Celery, settings: Settings) -> Runtime:
    rt = Runtime(settings)
    no_limit = is_broken("worker_no_time_limit")
    # soft limit after the pipeline's own deadline (it kills the group first); hard limit as a last resort
    render_soft = None if no_limit else settings.render_time_limit + 15
    render_hard = None if no_limit else settings.render_time_limit + 45
    ai_soft = settings.ai_task_timeout + 10
    ai_hard = settings.ai_task_timeout + 30

    @app.task(name=TASK_RENDER, soft_time_limit=render_soft, time_limit=render_hard, ignore_result=True)
    def render_task(job_id: str) -> None:
        run_render(rt, job_id)

    @app.task(name=TASK_AI, soft_time_limit=ai_soft, time_limit=ai_hard, ignore_result=True)
    def ai_task(job_id: str) -> None:
        run_ai(rt, job_id)

    @app.task(name=TASK_LEAK, ignore_result=True, time_limit=60)
    def leak_task(mb: int = 5) -> None:
        run_leak(rt, mb)

    return rt
