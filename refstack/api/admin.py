"""Admin API for the harness: users, keys, credits, tokens, ledgers, job records, leak tasks.

Every route needs ``Authorization: Bearer $ADMIN_TOKEN``; errors use the
render-API envelope. Documented in refstack/README.md.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from typing import Any, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool

from refstack.api.errors import ApiError, invalid, not_found
from refstack.api.openapi import doc
from refstack.broken import is_broken
from refstack.db import ops
from refstack.db.schema import JOB_STATUSES, api_keys, credits, jobs, users
from refstack.worker.celery_app import HEARTBEAT_PREFIX, TASK_LEAK

LEAK_KEY = "refstack:leak:observations"
log = logging.getLogger("refstack.api.admin")


def _uuid(raw: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except (ValueError, TypeError):
        raise not_found(what) from None


#: longest lifetime of an admin-issued token: 10 years (datetime stops at year 9999)
MAX_TOKEN_TTL_SECONDS = 10 * 365 * 86400


def _int_field(data: dict, key: str, default: int | None, lo: int = 0, hi: int = 10**12) -> int | None:
    """``data[key]`` as an integer in [lo, hi]; ``default`` when absent; an explicit null is a 400."""
    if key not in data:
        return default
    val = data[key]
    if val is None and is_broken("api_500_on_null_ttl"):
        return None  # planted bug: null taken for "not given", and no default applied
    if isinstance(val, bool) or not isinstance(val, int) or not lo <= val <= hi:
        raise invalid(key, f"{key} must be an integer in [{lo}, {hi}]")
    return val


def job_admin_view(row: Any) -> dict[str, Any]:
    out = ops.job_public(row)
    out.update({"user_id": str(row.user_id), "params": row.params, "result": row.result,
                "output_path": row.output_path, "output_bytes": row.output_bytes, "worker": row.worker,
                "conversation_id": str(row.conversation_id) if row.conversation_id else None})
    return out


def register_admin(app: FastAPI, svc, require_admin: Callable, read_json: Callable) -> None:
    settings = svc.settings

    async def body(request: Request) -> dict[str, Any]:
        if not (await request.body()).strip():
            return {}
        return await read_json(request, settings.max_body_bytes)

    @app.post("/admin/users", status_code=201, **doc("create_user"))
    async def create_user(request: Request):
        require_admin(svc, request)
        data = await body(request)
        balance = _int_field(data, "credits", 1000)
        for key in ("name", "phone", "password"):
            val = data.get(key)
            if val is not None and (not isinstance(val, str) or "\x00" in val or len(val) > 200):
                raise invalid(key, f"{key} must be a string of at most 200 characters without NUL")
        new = await run_in_threadpool(svc.tx, lambda conn: ops.create_user(
            conn, name=data.get("name") or "", phone=data.get("phone"), password=data.get("password"),
            balance=balance))
        return JSONResponse({"user_id": str(new.user_id), "key_id": str(new.key_id), "api_key": new.api_key,
                             "phone": new.phone, "password": new.password, "credits": new.credits}, status_code=201)

    @app.get("/admin/users/{user_id}", **doc("get_user"))
    def get_user(user_id: str, request: Request):
        require_admin(svc, request)
        uid = _uuid(user_id, "user")

        def tx(conn):
            user = conn.execute(select(users).where(users.c.id == uid)).first()
            if user is None:
                return None
            balance = conn.execute(select(credits.c.balance).where(credits.c.user_id == uid)).scalar()
            keys = conn.execute(select(api_keys).where(api_keys.c.user_id == uid).order_by(api_keys.c.created_at)).all()
            return user, balance, keys

        found = svc.tx(tx)
        if found is None:
            raise not_found("user")
        user, balance, keys = found
        return {"user_id": str(user.id), "name": user.name, "phone": user.phone, "credits": balance,
                "keys": [{"key_id": str(k.id), "prefix": k.prefix, "deleted": k.deleted_at is not None}
                         for k in keys]}

    @app.post("/admin/users/{user_id}/keys", status_code=201, **doc("new_key"))
    def new_key(user_id: str, request: Request):
        require_admin(svc, request)
        uid = _uuid(user_id, "user")
        rotate = request.query_params.get("rotate") in ("1", "true")

        def tx(conn):
            if conn.execute(select(users.c.id).where(users.c.id == uid)).first() is None:
                return None
            revoked = ops.delete_user_keys(conn, uid) if rotate else 0
            key_id, key = ops.create_api_key(conn, uid)
            return key_id, key, revoked

        made = svc.tx(tx)
        if made is None:
            raise not_found("user")
        return JSONResponse({"key_id": str(made[0]), "api_key": made[1], "deleted_keys": made[2]}, status_code=201)

    @app.delete("/admin/keys/{key_id}", **doc("delete_key"))
    def delete_key(key_id: str, request: Request):
        require_admin(svc, request)
        kid = _uuid(key_id, "key")
        if not svc.tx(lambda conn: ops.delete_api_key(conn, kid)):
            raise not_found("key")
        return {"key_id": key_id, "deleted": True}

    @app.put("/admin/users/{user_id}/credits", **doc("set_credits"))
    async def set_credits(user_id: str, request: Request):
        require_admin(svc, request)
        uid = _uuid(user_id, "user")
        data = await body(request)
        balance = _int_field(data, "credits", None)
        if balance is None:
            raise invalid("credits", "credits is required")
        new = await run_in_threadpool(svc.tx, lambda conn: ops.set_balance(conn, uid, balance))
        if new is None:
            raise not_found("user")
        return {"user_id": user_id, "credits": new}

    @app.post("/admin/users/{user_id}/tokens", status_code=201, **doc("issue_token"))
    async def issue_token(user_id: str, request: Request):
        """``{"expired": true}`` issues a token that expired a minute ago (api.auth expired-token case)."""
        require_admin(svc, request)
        uid = _uuid(user_id, "user")
        data = await body(request)
        ttl_max = 10**12 if is_broken("api_500_on_huge_ttl") else MAX_TOKEN_TTL_SECONDS
        ttl = -60 if data.get("expired") else _int_field(data, "ttl_seconds", settings.token_ttl_seconds, 1, ttl_max)

        def tx(conn):
            if conn.execute(select(users.c.id).where(users.c.id == uid)).first() is None:
                return None
            return ops.issue_token(conn, uid, ttl)

        issued = await run_in_threadpool(svc.tx, tx)
        if issued is None:
            raise not_found("user")
        return JSONResponse({"access_token": issued[0], "expires_at": issued[1].isoformat()}, status_code=201)

    @app.get("/admin/users/{user_id}/ledger", **doc("user_ledger"))
    def user_ledger(user_id: str, request: Request):
        require_admin(svc, request)
        uid = _uuid(user_id, "user")
        return {"entries": svc.tx(lambda conn: ops.ledger(conn, user_id=uid))}

    @app.get("/admin/jobs/{job_id}/ledger", **doc("job_ledger"))
    def job_ledger(job_id: str, request: Request):
        require_admin(svc, request)
        jid = _uuid(job_id, "job")
        entries = svc.tx(lambda conn: ops.ledger(conn, job_id=jid))
        return {"entries": entries, "charged": -sum(e["amount"] for e in entries if e["kind"] == "charge"),
                "refunded": sum(e["amount"] for e in entries if e["kind"] == "refund")}

    @app.get("/admin/jobs/{job_id}", **doc("admin_job"))
    def admin_job(job_id: str, request: Request):
        require_admin(svc, request)
        jid = _uuid(job_id, "job")
        row = svc.tx(lambda conn: ops.job_row(conn, jid))
        if row is None:
            raise not_found("job")
        return job_admin_view(row)

    @app.get("/admin/jobs", **doc("admin_jobs"))
    def admin_jobs(request: Request):
        """Filter by ``status``, ``kind``, ``user_id``; newest first; ``limit`` up to 1000."""
        require_admin(svc, request)
        q = request.query_params
        stmt = select(jobs)
        if q.get("status"):
            statuses = q["status"].split(",")
            if not set(statuses) <= set(JOB_STATUSES):
                raise invalid("status", f"status must be among {', '.join(JOB_STATUSES)}")
            stmt = stmt.where(jobs.c.status.in_(statuses))
        if q.get("kind"):
            stmt = stmt.where(jobs.c.kind == q["kind"])
        if q.get("user_id"):
            stmt = stmt.where(jobs.c.user_id == _uuid(q["user_id"], "user"))
        try:
            limit = int(q.get("limit", "100"))
        except ValueError:
            raise invalid("limit", "limit must be an integer") from None
        stmt = stmt.order_by(jobs.c.created_at.desc()).limit(max(1, min(limit, 1000)))
        rows = svc.tx(lambda conn: conn.execute(stmt).all())
        return {"data": [job_admin_view(r) for r in rows]}

    @app.get("/admin/stats", **doc("admin_stats"))
    def admin_stats(request: Request):
        require_admin(svc, request)
        rows = svc.tx(lambda conn: conn.execute(
            select(jobs.c.kind, jobs.c.status, func.count()).group_by(jobs.c.kind, jobs.c.status)).all())
        out: dict[str, dict[str, int]] = {}
        for kind, status, n in rows:
            out.setdefault(kind, {})[status] = n
        return {"jobs": out}

    @app.post("/admin/leak", status_code=202, **doc("publish_leak"))
    async def leak(request: Request):
        """Publish ``count`` leak tasks that each keep ``mb`` MiB alive in the worker child (worker.memory_leak)."""
        require_admin(svc, request)
        data = await body(request)
        count = _int_field(data, "count", 1, 1, 10000)
        mb = _int_field(data, "mb", 5, 1, 512)

        def send():
            for _ in range(count):
                svc.celery.send_task(TASK_LEAK, args=[mb], queue="maintenance", routing_key="maintenance",
                                     retry=True, retry_policy={"max_retries": 1},
                                     delivery_mode=2)

        try:
            await run_in_threadpool(send)
        except Exception as exc:  # noqa: BLE001
            raise ApiError(503, "broker_unavailable", f"could not publish leak tasks: {exc}", retry_after=5) from exc
        return JSONResponse({"published": count, "mb": mb}, status_code=202)

    @app.post("/admin/hold-connections", status_code=202, **doc("hold_connections"))
    async def hold_connections(request: Request):
        """Check out ``count`` pooled connections of THIS API process for ``seconds`` (db.pool_exhausted).

        The connections sit idle (not in a transaction) and go back to the pool afterwards. With
        WEB_CONCURRENCY > 1 each call lands on one process: use WEB_CONCURRENCY=1 for that scenario.
        """
        require_admin(svc, request)
        data = await body(request)
        count = _int_field(data, "count", settings.db_pool_size + settings.db_max_overflow, 1, 1000)
        seconds = _int_field(data, "seconds", 10, 1, 600)

        def hold() -> None:
            held = []
            try:
                for _ in range(count):
                    conn = svc.engine.connect()
                    conn.exec_driver_sql("SELECT 1")
                    conn.commit()
                    held.append(conn)
                threading.Event().wait(seconds)  # the fault: hold them this long
            except Exception as exc:  # noqa: BLE001
                log.warning("hold-connections stopped early: %s", exc)
            finally:
                for conn in held:
                    conn.close()

        threading.Thread(target=hold, name="hold-connections", daemon=True).start()
        return JSONResponse({"pid": os.getpid(), "count": count, "seconds": seconds}, status_code=202)

    @app.get("/admin/leak", **doc("leak_observations"))
    def leak_observations(request: Request):
        """What the leak tasks saw: ``[{pid, rss_mb, held_mb, tasks_in_child}]``, newest first."""
        require_admin(svc, request)
        try:
            raw = svc.redis.lrange(LEAK_KEY, 0, 999)
        except Exception as exc:  # noqa: BLE001
            raise ApiError(503, "redis_unavailable", f"cannot read observations: {exc}", retry_after=2) from exc
        return {"observations": [json.loads(r) for r in raw]}

    @app.get("/admin/workers", **doc("admin_workers"))
    def workers(request: Request):
        """Live heartbeats of the worker processes (``refstack:worker:*``): who is on which job."""
        require_admin(svc, request)
        try:
            keys = sorted(svc.redis.scan_iter(match=HEARTBEAT_PREFIX + "*", count=100))
            values = svc.redis.mget(keys) if keys else []
        except Exception as exc:  # noqa: BLE001
            raise ApiError(503, "redis_unavailable", f"cannot read heartbeats: {exc}", retry_after=2) from exc
        return {"workers": [json.loads(v) for v in values if v]}
