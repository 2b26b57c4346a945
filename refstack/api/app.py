"""The HTTP API: render API (/v1), AI API (/api/v1), admin API (/admin), /health, /metrics.

``create_app(settings)`` builds everything from :class:`~refstack.settings.Settings`;
nothing happens at import time. Handlers are plain functions over the
database layer; every failure is an :class:`ApiError` shaped into the envelope
of the API the request went to.
"""

from __future__ import annotations

import base64
import logging
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import redis
import sqlalchemy.exc as sa_exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from kombu import Connection as KombuConnection
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from sqlalchemy import and_, func, insert, or_, select, text, update

from refstack.api import auth as authmod
from refstack.api import validation as v
from refstack.api.download import Downloads, OutputGone, RemuxBusy
from refstack.api.errors import ApiError, body_for, invalid, is_ai_path, not_found, unavailable
from refstack.api.openapi import doc, install as install_openapi, metrics_doc
from refstack.api.metrics import HTTP_LATENCY, HTTP_REQUESTS, StateCollector, render_latest
from refstack.api.ratelimit import RateLimiter, RedisUnavailable
from refstack.broken import is_broken
from refstack.db import ops
from refstack.db.engine import (
    DatabaseError, TransactionConflict, classify, make_engine, make_probe_engine, run_transaction,
)
from refstack.db.schema import JOB_STATUSES, api_keys, conversations, credits, jobs, messages, users
from refstack.settings import Settings
from refstack.worker.celery_app import TASK_AI, TASK_LEAK, TASK_RENDER, PublishError, make_celery, publish

log = logging.getLogger("refstack.api")

LEAK_KEY = "refstack:leak:observations"


@dataclass(frozen=True)
class Principal:
    user_id: uuid.UUID
    via: str  # "key" | "token"


def _uuid(raw: str, what: str = "job") -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except (ValueError, TypeError, AttributeError):
        raise not_found(what) from None  # a malformed id is just an id that does not exist


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


def _connect_once(conn: KombuConnection) -> None:
    """One AMQP connection attempt bounded by its connect_timeout (kombu's connect() retries for ~2 s)."""
    conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, interval_max=0, timeout=1.0)


def ensure_redis_policy(client: redis.Redis, policy: str) -> bool:
    """Assert Redis's eviction policy (R §四.3: ``maxmemory-policy allkeys-lru``); True once it holds.

    Every key the stack writes has a TTL and is safe to evict (rate-limit buckets, observations),
    so under ``maxmemory`` Redis must evict rather than refuse writes (the default ``noeviction``).
    Best effort: at start, and again by the health check after Redis was unreachable (a restarted
    Redis has lost a CONFIG SET). A Redis that forbids CONFIG keeps its own policy (logged).
    """
    if not policy or is_broken("api_no_redis_eviction_policy"):
        return True
    try:
        current = client.config_get("maxmemory-policy").get("maxmemory-policy")
        if current != policy:
            client.config_set("maxmemory-policy", policy)
            logging.getLogger("refstack.api").info("redis maxmemory-policy %s -> %s", current, policy)
        return True
    except redis.ResponseError as exc:  # CONFIG disabled / renamed: leave it, say so once
        logging.getLogger("refstack.api").warning("cannot set redis maxmemory-policy=%s: %s", policy, exc)
        return True
    except redis.RedisError:
        return False  # unreachable now: the health check retries


class Services:
    """Everything a request needs, built once per process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = make_engine(settings, application_name="refstack-api")
        self.probe_engine = make_probe_engine(settings)
        self.redis = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=0.5, socket_timeout=0.5,
                                          retry_on_timeout=False, health_check_interval=10)
        self.limiter = RateLimiter(self.redis)
        self._redis_policy_set = ensure_redis_policy(self.redis, settings.redis_maxmemory_policy)
        self.celery = make_celery(settings)
        self.downloads = Downloads(settings.remux_max_concurrent)
        self.state = StateCollector(self.probe_engine, self.queue_lengths)
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="health")

    def tx(self, fn: Callable[..., Any]) -> Any:
        return run_transaction(self.engine, fn, retries=self.settings.db_deadlock_retries)

    def queue_lengths(self) -> dict[str, int]:
        with KombuConnection(self.settings.broker_url, connect_timeout=1.0) as conn:
            _connect_once(conn)  # a scrape must stay quick
            channel = conn.channel()
            out = {}
            for queue in self.celery.conf.task_queues:  # declared exactly as the workers declare them
                _, count, _ = queue.bind(channel).queue_declare()
                out[queue.name] = count
            return out

    # ---- health checks: each bounded to about a second ----
    def check_database(self) -> None:
        with self.probe_engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    def check_redis(self) -> None:
        try:
            self.redis.ping()
        except redis.RedisError:
            self._redis_policy_set = False  # a restarted Redis comes back with its own config
            raise
        if not self._redis_policy_set:
            self._redis_policy_set = ensure_redis_policy(self.redis, self.settings.redis_maxmemory_policy)

    def check_broker(self) -> None:
        with KombuConnection(self.settings.broker_url, connect_timeout=1.0) as conn:
            _connect_once(conn)


# ================================================================ auth


def authenticate(svc: Services, request: Request, *, ai: bool) -> Principal:
    """Bearer API key (render API) or login token / API key (AI API); 401 names the mistake (R §二.1)."""
    cred = authmod.parse_authorization(request.headers)
    if isinstance(cred, authmod.AuthProblem):
        raise authmod.unauthorized(cred)

    def lookup(conn):
        if cred.startswith("tk_"):
            return "token", ops.lookup_token(conn, cred)
        return "key", ops.lookup_api_key(conn, cred)

    via, found = svc.tx(lookup)
    if via == "token":
        if found is None:
            raise authmod.unauthorized(authmod.UNKNOWN_TOKEN)
        user_id, expires_at = found
        if expires_at <= datetime.now(timezone.utc):
            raise authmod.unauthorized(authmod.EXPIRED)
        return Principal(user_id, "token")
    if found is None:
        if is_broken("api_unknown_key_403"):
            raise ApiError(403, "forbidden", "access denied")  # planted bug: 403 for a key that does not exist
        raise authmod.unauthorized(authmod.UNKNOWN_TOKEN if ai and not cred.startswith("rk_") else authmod.UNKNOWN)
    user_id, _key_id, deleted_at = found
    if deleted_at is not None:
        raise authmod.unauthorized(authmod.DELETED)
    return Principal(user_id, "key")


def rate_limit(svc: Services, principal: Principal) -> None:
    """Per tenant (R §二.2): 429 rate_limit_exceeded with Retry-After; Redis down -> fail open/closed."""
    s = svc.settings
    if s.rate_limit_key_rate <= 0 or is_broken("api_no_rate_limit"):
        return
    try:
        d = svc.limiter.check_key(str(principal.user_id), s.rate_limit_key_rate, s.rate_limit_key_burst)
    except RedisUnavailable as exc:
        if s.rate_limit_fail_mode == "closed" or is_broken("api_ratelimit_fails_closed"):
            raise unavailable("rate_limiter_unavailable",
                              "rate limiter unavailable (Redis unreachable) and RATE_LIMIT_FAIL_MODE=closed",
                              retry_after=2) from exc
        return  # fail open (documented default)
    if not d.allowed:
        raise ApiError(429, "rate_limit_exceeded",
                       f"rate limit exceeded for this API key ({s.rate_limit_key_rate:g} requests/s, "
                       f"burst {s.rate_limit_key_burst}); retry after the given seconds",
                       retry_after=d.retry_after)


def require_admin(svc: Services, request: Request) -> None:
    token = svc.settings.admin_token
    if not token:
        raise ApiError(403, "forbidden", "the admin API is disabled: set ADMIN_TOKEN")
    cred = authmod.parse_authorization(request.headers)
    if isinstance(cred, authmod.AuthProblem):
        raise ApiError(401, "unauthorized", cred.message)
    import hmac

    if not hmac.compare_digest(cred.encode(), token.encode()):
        raise ApiError(401, "unauthorized", "invalid admin token")


async def read_json(request: Request, max_bytes: int) -> dict[str, Any]:
    """The JSON object body, reading at most ``max_bytes`` + 1 bytes (R §二.3: oversize -> 400)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > max_bytes:
                raise invalid("body", f"request body is {int(declared)} bytes; the limit is {max_bytes} bytes")
        except ValueError:
            raise invalid("body", "Content-Length is not a number") from None
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > max_bytes:
            raise invalid("body", f"request body exceeds the limit of {max_bytes} bytes")
    return v.parse_json(bytes(buf), max_bytes)


# ================================================================ jobs


def submit_job(svc: Services, principal: Principal, *, kind: str, params: dict[str, Any], cost: int,
               conversation_id: uuid.UUID | None = None, prompt: str | None = None) -> Any:
    """Charge and insert in one transaction, then publish with confirm; 503 if the broker refuses."""
    job_id = uuid.uuid4()
    if is_broken("api_slow_submit"):
        time.sleep(5.0)  # planted bug (load.baseline, R §三): a slow submit path

    def tx(conn):
        if kind == "ai" and conversation_id is not None:
            owner = conn.execute(select(conversations.c.user_id).where(conversations.c.id == conversation_id)).scalar()
            if owner != principal.user_id:
                raise not_found("conversation")
        if not ops.charge(conn, principal.user_id, job_id, cost):
            balance = conn.execute(select(credits.c.balance).where(credits.c.user_id == principal.user_id)).scalar()
            raise ApiError(402, "insufficient_credits",
                           f"insufficient credits: balance {balance or 0}, this job costs {cost}")
        conv = conversation_id
        if kind == "ai" and conv is None:
            conv = uuid.uuid4()
            conn.execute(insert(conversations).values(id=conv, user_id=principal.user_id, title=(prompt or "")[:60]))
        conn.execute(insert(jobs).values(id=job_id, user_id=principal.user_id, kind=kind, status="pending",
                                         cost=cost, params=params, conversation_id=conv))
        if kind == "ai":
            conn.execute(insert(messages).values(conversation_id=conv, job_id=None, role="user", content=prompt or ""))
        return ops.job_row(conn, job_id)

    row = svc.tx(tx)
    try:
        publish(svc.celery, TASK_RENDER if kind == "render" else TASK_AI, str(job_id), svc.settings.publish_timeout)
    except PublishError as exc:
        if is_broken("api_accept_when_broker_down"):
            log.warning("publish failed, accepting anyway (planted bug): %s", exc)
            return row
        log.error("job %s not queued: %s", job_id, exc)
        # never accept-and-lose (queue.broker_down): the job ends failed and refunded, the client gets 503
        svc.tx(lambda conn: ops.finish_unsuccessfully(conn, job_id, "failed", "broker_unavailable",
                                                      "the job queue was unavailable; nothing was charged"))
        raise unavailable("broker_unavailable", "the job queue is unavailable; the job was not accepted "
                                                "and nothing was charged: retry later", retry_after=5) from exc
    return row


def find_job(svc: Services, principal: Principal, raw_id: str, *, kind: str | None = None) -> Any:
    job_id = _uuid(raw_id)

    def tx(conn):
        row = ops.job_row(conn, job_id)
        return row

    row = svc.tx(tx)
    if row is None or (kind is not None and row.kind != kind):
        raise not_found("job")
    if row.user_id != principal.user_id:
        if is_broken("api_leak_existence"):
            raise ApiError(403, "forbidden", "this job belongs to another user")
        raise not_found("job")  # byte-identical to a missing job
    return row


def video_view(row: Any, settings: Settings) -> dict[str, Any]:
    out = ops.job_public(row)
    params = row.params or {}
    out["template_id"] = params.get("template_id")
    if row.status == "completed" and row.output_path:
        out["output"] = {"path": row.output_path, "bytes": row.output_bytes,
                         "download_url": f"/v1/videos/{row.id}/download",
                         "width": params.get("width"), "height": params.get("height"),
                         "duration": params.get("duration")}
    else:
        out["output"] = None
    return out


def _encode_cursor(row: Any) -> str:
    return base64.urlsafe_b64encode(f"{row.created_at.isoformat()}|{row.id}".encode()).decode().rstrip("=")


def _decode_cursor(raw: str) -> tuple[datetime, uuid.UUID]:
    try:
        padded = raw + "=" * (-len(raw) % 4)
        ts, ident = base64.urlsafe_b64decode(padded.encode()).decode().split("|", 1)
        return datetime.fromisoformat(ts), uuid.UUID(ident)
    except Exception:  # noqa: BLE001 - anything malformed is the client's mistake
        raise invalid("cursor", "cursor is not a value returned by this API") from None


# ================================================================ app


def allowed_methods(request: Request) -> str:
    """The ``Allow`` value of a 405: the methods of all routes matching the path.

    Starlette's own 405 names the methods of the first matching route only, and
    ``/v1/videos`` is two routes (GET and POST).
    """
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))



def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    app = FastAPI(title="refstack", docs_url=None, redoc_url=None, openapi_url="/openapi.json")
    svc = Services(settings)
    app.state.svc = svc

    # ---------------------------------------------------------------- middleware
    # A pure ASGI middleware, not @app.middleware("http"): Starlette's BaseHTTPMiddleware never
    # closed a StreamingResponse's generator when the client went away mid-download, so the remux
    # ffmpeg ran on after every aborted download (runbook P, the pile-up; stream.client_disconnect).
    class FloodAndMetrics:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await self.inner(scope, receive, send)
                return
            request = Request(scope, receive)
            start = time.perf_counter()
            path = request.url.path
            status = 500

            async def send_status(message: Any) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                response = await _flood_guard(request)
                if response is not None:
                    await response(scope, receive, send_status)
                else:
                    await self.inner(scope, receive, send_status)
            finally:
                route = scope.get("route")
                label = getattr(route, "path_format", None) or getattr(route, "path", None) or "<unmatched>"
                if path in ("/metrics",):
                    label = path
                counted = status
                if status >= 500 and is_broken("metrics_no_5xx_count"):
                    counted = 200  # BUG: server errors counted as successes; HighErrorRate never fires
                HTTP_REQUESTS.labels(request.method, label, str(counted)).inc()
                HTTP_LATENCY.labels(request.method, label).observe(time.perf_counter() - start)

    app.add_middleware(FloodAndMetrics)

    async def _flood_guard(request: Request) -> Response | None:
        """Per client IP (R §六.3 limit_req 10r/s burst 20); health, metrics and admin are exempt."""
        s = settings
        path = request.url.path
        if s.rate_limit_ip_rate <= 0 or is_broken("api_no_rate_limit"):
            return None
        if path in ("/health", "/metrics") or path.startswith("/admin"):
            return None
        ip = request.client.host if request.client else "unknown"
        if ip in s.rate_limit_ip_exempt:
            return None
        d = await run_in_threadpool(svc.limiter.check_ip, ip, s.rate_limit_ip_rate, s.rate_limit_ip_burst)
        if d.allowed:
            return None
        err = ApiError(429, "rate_limit_exceeded",
                       f"too many requests from {ip} ({s.rate_limit_ip_rate:g} requests/s, burst "
                       f"{s.rate_limit_ip_burst}); slow down", retry_after=d.retry_after)
        return JSONResponse(body_for(path, err), status_code=429, headers=err.headers)

    # ---------------------------------------------------------------- error handlers
    def _respond(request: Request, err: ApiError) -> JSONResponse:
        return JSONResponse(body_for(request.url.path, err), status_code=err.status, headers=err.headers)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        cause = exc.__cause__ or exc.__context__
        if cause is not None and is_broken("api_stack_trace_in_body"):
            # planted bug (debug mode left on): the underlying exception's traceback goes out too
            exc.message += "\n" + "".join(traceback.format_exception(cause))
        return _respond(request, exc)

    @app.exception_handler(DatabaseError)
    async def _db_error(request: Request, exc: DatabaseError):
        return _respond(request, _db_api_error(exc))

    @app.exception_handler(sa_exc.SQLAlchemyError)
    async def _sa_error(request: Request, exc: sa_exc.SQLAlchemyError):
        mapped = classify(exc)
        if mapped is not None:
            return _respond(request, _db_api_error(mapped))
        # safety net: input that slipped past validation is the client's problem, not a 500
        if isinstance(exc, sa_exc.IntegrityError):
            return _respond(request, ApiError(409, "conflict", "the request conflicts with existing data "
                                                               "(duplicate or dangling reference)"))
        if isinstance(exc, sa_exc.DataError):
            return _respond(request, invalid("request", "a value in the request cannot be stored "
                                                        "(wrong type, out of range or NUL byte)"))
        return await _unexpected(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        errs = exc.errors()
        loc = errs[0].get("loc", ()) if errs else ()
        field = ".".join(str(p) for p in loc[1:]) or "request"
        return _respond(request, invalid(field, f"{field}: {errs[0].get('msg', 'invalid') if errs else 'invalid'}"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        msg = "no such endpoint" if exc.status_code == 404 else str(exc.detail)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # RFC 9110: every method of every route on this path
            headers["Allow"] = allowed_methods(request)
        return _respond(request, ApiError(exc.status_code, code, msg, headers=headers))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        ref = uuid.uuid4().hex[:12]
        log.error("unhandled error ref=%s on %s %s", ref, request.method, request.url.path,
                  exc_info=(type(exc), exc, exc.__traceback__))
        message = f"internal error (reference {ref})"
        if is_broken("api_stack_trace_in_body"):
            message += "\n" + "".join(traceback.format_exception(exc))
        return _respond(request, ApiError(500, "internal_error", message))

    def _db_api_error(exc: DatabaseError) -> ApiError:
        if isinstance(exc, TransactionConflict):
            return ApiError(409, "conflict", exc.message, retry_after=1)
        return unavailable(exc.code, exc.message, retry_after=2)

    # ---------------------------------------------------------------- health and metrics
    @app.get("/health", **doc("health"))
    def health():
        checks = {"database": svc.check_database, "redis": svc.check_redis, "broker": svc.check_broker}
        futures = {name: svc.pool.submit(fn) for name, fn in checks.items()}
        deadline = time.monotonic() + 2.0
        report: dict[str, Any] = {}
        for name, fut in futures.items():
            try:
                fut.result(timeout=max(0.0, deadline - time.monotonic()))
                report[name] = {"ok": True}
            except Exception as exc:  # noqa: BLE001
                report[name] = {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
        failing = [n for n, r in report.items() if not r["ok"]]
        ok = not failing or is_broken("api_health_always_ok")
        body = {"status": "ok" if ok else "unhealthy", "failing": failing, "checks": report}
        if failing:
            body["message"] = "unreachable: " + ", ".join(failing)
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", response_class=PlainTextResponse, **metrics_doc())
    def metrics():
        return Response(render_latest(svc.state), media_type="text/plain; version=0.0.4; charset=utf-8")

    # ---------------------------------------------------------------- render API (R §二)
    @app.post("/v1/videos", status_code=202, **doc("create_video"))
    async def create_video(request: Request):
        principal = await run_in_threadpool(authenticate, svc, request, ai=False)
        await run_in_threadpool(rate_limit, svc, principal)
        data = await read_json(request, settings.max_body_bytes)
        req = v.parse_video_request(data)
        for name in ("input_asset", "audio_asset"):
            val = getattr(req, name)
            if val is not None:
                v.resolve_asset(settings.assets_dir, name, val)
        row = await run_in_threadpool(submit_job, svc, principal, kind="render", params=req.params(),
                                      cost=settings.render_cost)
        return JSONResponse(video_view(row, settings), status_code=202,
                            headers={"Location": f"/v1/videos/{row.id}"})

    @app.get("/v1/videos", **doc("list_videos"))
    def list_videos(request: Request):
        principal = authenticate(svc, request, ai=False)
        rate_limit(svc, principal)
        q = request.query_params
        limit = v.parse_limit(q.get("limit"))
        status = q.get("status")
        sqli = is_broken("api_sql_concat_status")
        if status is not None and status not in JOB_STATUSES and not sqli:
            raise invalid("status", f"status must be one of {', '.join(JOB_STATUSES)}")
        cursor = _decode_cursor(q["cursor"]) if q.get("cursor") else None

        def tx(conn):
            stmt = select(jobs).where(jobs.c.user_id == principal.user_id, jobs.c.kind == "render")
            if status and sqli:  # planted bug: the filter pasted into the SQL text
                stmt = stmt.where(text(f"status = '{status}'"))
            elif status:
                stmt = stmt.where(jobs.c.status == status)
            if cursor:
                ts, ident = cursor
                stmt = stmt.where(or_(jobs.c.created_at < ts, and_(jobs.c.created_at == ts, jobs.c.id < ident)))
            return conn.execute(stmt.order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(limit + 1)).all()

        rows = svc.tx(tx)
        more = len(rows) > limit
        rows = rows[:limit]
        return {"data": [video_view(r, settings) for r in rows],
                "next_cursor": _encode_cursor(rows[-1]) if more and rows else None}

    @app.get("/v1/videos/{job_id}", **doc("get_video"))
    def get_video(job_id: str, request: Request):
        principal = authenticate(svc, request, ai=False)
        rate_limit(svc, principal)
        return video_view(find_job(svc, principal, job_id, kind="render"), settings)

    @app.delete("/v1/videos/{job_id}", **doc("cancel_video"))
    def cancel_video(job_id: str, request: Request):
        principal = authenticate(svc, request, ai=False)
        rate_limit(svc, principal)
        row = find_job(svc, principal, job_id, kind="render")

        def tx(conn):
            # lock order jobs -> credits, like the worker (A §4.2)
            changed = ops.finish_unsuccessfully(conn, row.id, "cancelled", "cancelled", "cancelled by the user")
            return changed, ops.job_row(conn, row.id)

        changed, fresh = svc.tx(tx)
        if not changed:
            raise ApiError(409, "conflict", f"job is already {fresh.status}; only pending or running jobs can "
                                            "be cancelled")
        return video_view(fresh, settings)

    @app.get("/v1/videos/{job_id}/download", response_class=Response, **doc("download_video"))
    async def download_video(job_id: str, request: Request):
        principal = await run_in_threadpool(authenticate, svc, request, ai=False)
        await run_in_threadpool(rate_limit, svc, principal)
        row = await run_in_threadpool(find_job, svc, principal, job_id, kind="render")
        if row.status != "completed":
            raise ApiError(409, "conflict", f"job is {row.status}; the download exists once it is completed")
        path = Path(row.output_path or "")
        if not row.output_path or not path.is_file():
            raise ApiError(410, "output_missing", "the job completed but its output file is gone")
        try:
            stream = svc.downloads.open(path)
        except RemuxBusy as exc:
            raise unavailable("busy", f"too many downloads in progress ({exc}); retry shortly", retry_after=2) from exc
        except OutputGone as exc:
            raise ApiError(410, "output_missing", f"the job completed but its output is unreadable: {exc}") from exc
        return StreamingResponse(stream, media_type="video/mp4",
                                 headers={"Content-Disposition": f'attachment; filename="{row.id}.mp4"'})

    # ---------------------------------------------------------------- AI API (A §1)
    @app.post("/api/v1/auth/login", **doc("login"))
    async def login(request: Request):
        data = await read_json(request, settings.max_body_bytes)
        phone, password = v.parse_login(data)

        def tx(conn):
            user = conn.execute(select(users.c.id, users.c.password_hash).where(users.c.phone == phone)).first()
            if user is None or not ops.check_password(password, user.password_hash):
                return None
            return ops.issue_token(conn, user.id, settings.token_ttl_seconds)

        issued = await run_in_threadpool(svc.tx, tx)
        if issued is None:
            raise ApiError(401, "unauthorized", "wrong phone number or password")
        token, expires = issued
        return {"success": True, "data": {"access_token": token, "token_type": "bearer",
                                          "expires_at": expires.isoformat(),
                                          "expires_in": settings.token_ttl_seconds}}

    @app.post("/api/v1/ai/jobs", status_code=202, **doc("create_ai_job"))
    async def create_ai_job(request: Request):
        principal = await run_in_threadpool(authenticate, svc, request, ai=True)
        await run_in_threadpool(rate_limit, svc, principal)
        data = await read_json(request, settings.max_body_bytes)
        req = v.parse_ai_job(data)
        conv = _uuid(req.conversation_id, "conversation") if req.conversation_id else None
        row = await run_in_threadpool(
            lambda: submit_job(svc, principal, kind="ai", params={"model": req.model, "prompt": req.prompt},
                               cost=settings.ai_cost, conversation_id=conv, prompt=req.prompt))
        return JSONResponse({"success": True, "data": ai_view(row)}, status_code=202)

    @app.get("/api/v1/ai/jobs/{job_id}", **doc("get_ai_job"))
    def get_ai_job(job_id: str, request: Request):
        principal = authenticate(svc, request, ai=True)
        rate_limit(svc, principal)
        return {"success": True, "data": ai_view(find_job(svc, principal, job_id, kind="ai"))}

    @app.get("/api/v1/ai/models", **doc("list_models"))
    def list_models(request: Request):
        principal = authenticate(svc, request, ai=True)
        rate_limit(svc, principal)
        from refstack.worker.ai import list_provider_models

        try:
            models = list_provider_models(settings, timeout=3.0)
        except Exception as exc:  # noqa: BLE001 - provider errors are mapped, never a 500
            code = getattr(exc, "code", "provider_unavailable")
            raise ApiError(503, "provider_unavailable",
                           f"the AI provider could not list models ({code}): {getattr(exc, 'message', exc)}",
                           retry_after=5) from exc
        return {"success": True, "data": models}

    @app.get("/api/v1/ai/conversations/{conversation_id}", **doc("get_conversation"))
    def get_conversation(conversation_id: str, request: Request):
        principal = authenticate(svc, request, ai=True)
        rate_limit(svc, principal)
        conv_id = _uuid(conversation_id, "conversation")

        def tx(conn):
            conv = conn.execute(select(conversations).where(conversations.c.id == conv_id,
                                                            conversations.c.user_id == principal.user_id)).first()
            if conv is None:
                return None
            msgs = conn.execute(select(messages).where(messages.c.conversation_id == conv_id)
                                .order_by(messages.c.id)).all()
            return conv, msgs

        found = svc.tx(tx)
        if found is None:
            raise not_found("conversation")  # missing and someone else's look the same
        conv, msgs = found
        return {"success": True, "data": {
            "conversation_id": str(conv.id), "title": conv.title, "created_at": _iso(conv.created_at),
            "messages": [{"role": m.role, "content": m.content, "job_id": str(m.job_id) if m.job_id else None,
                          "created_at": _iso(m.created_at)} for m in msgs]}}

    def ai_view(row: Any) -> dict[str, Any]:
        out = ops.job_public(row)
        out["job_id"] = out["id"]
        out["model"] = (row.params or {}).get("model")
        out["conversation_id"] = str(row.conversation_id) if row.conversation_id else None
        out["result"] = row.result
        return out

    # ---------------------------------------------------------------- admin API (for the harness)
    from refstack.api.admin import register_admin

    register_admin(app, svc, require_admin, read_json)
    install_openapi(app)
    return app
