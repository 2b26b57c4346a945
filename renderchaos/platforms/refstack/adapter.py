"""RefstackPlatform: the reference render stack behind the platform seam.

The reference stack has every optional group: tenants with API keys and access tokens, credits
with a ledger, per-key and per-IP limits, the runbooks' error envelopes, an AI API, live
recording, Prometheus metrics, an OpenAPI document and test hooks (hold the database pool,
publish leaking tasks). Its admin API (``ADMIN_TOKEN``) is the harness's view of every job.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, ClassVar
from urllib.parse import quote

import httpx

from renderchaos.errors import ConfigError, TargetError
from renderchaos.platforms.base import (
    Account, Answer, ApiError, Asset, BadCredential, Endpoint, ErrorKind, Feature, Health, InvalidRequest, Job,
    JobState, Platform, PlatformEndpoint, RenderRequest, timed,
)
from renderchaos.platforms.refstack.ai import AiApi
from renderchaos.platforms.refstack.client import UA, Admin, RenderApi, User, render_body

#: the refstack's own error code -> normalised kind
KINDS: dict[str, ErrorKind] = {
    "unauthorized": ErrorKind.UNAUTHORIZED,
    "invalid_parameter": ErrorKind.INVALID_PARAMETER,
    "validation_error": ErrorKind.INVALID_PARAMETER,
    "input_not_found": ErrorKind.INVALID_PARAMETER,
    "input_permission_denied": ErrorKind.INVALID_PARAMETER,
    "rate_limit_exceeded": ErrorKind.RATE_LIMITED,
    "rate_limited": ErrorKind.RATE_LIMITED,
    "not_found": ErrorKind.NOT_FOUND,
    "insufficient_credits": ErrorKind.INSUFFICIENT_CREDITS,
    "conflict": ErrorKind.CONFLICT,
    "internal_error": ErrorKind.SERVER_ERROR,
}
#: a 503's code -> the role of the dependency it names
DEPENDENCIES = {
    "database_unavailable": "database", "database_timeout": "database", "broker_unavailable": "broker",
    "redis_unavailable": "cache", "rate_limiter_unavailable": "cache", "provider_unavailable": "provider",
}
#: /health's names for its checks -> roles
HEALTH_ROLES = {"database": "database", "redis": "cache", "broker": "broker"}

AI_MODEL = "refstack-echo"

# R §二.1 常见错误 / A §1.1: the ways a client gets its credentials wrong
_BAD_CREDENTIALS: tuple[tuple[str, str, Callable[[str], dict[str, str]], str], ...] = (
    ("missing_header", "no Authorization header at all", lambda key: {}, r"missing|no authorization"),
    ("misspelt_header", "'Authorisation' (British spelling) instead of 'Authorization'",
     lambda key: {"Authorisation": f"Bearer {key}"}, r"authorisation|misspel"),
    ("no_bearer", "the key without the 'Bearer' keyword", lambda key: {"Authorization": key}, r"\bbearer\b"),
    ("whitespace_double_space", "key pasted with an extra space after 'Bearer'",
     lambda key: {"Authorization": f"Bearer  {key}"}, r"whitespace|space"),
    ("whitespace_inside", "key pasted with a space inside it (wrapped line)",
     lambda key: {"Authorization": f"Bearer {key[:8]} {key[8:]}"}, r"whitespace|space"),
    ("unknown_key", "a well-formed key that does not exist (typo, another environment's key)",
     lambda key: {"Authorization": f"Bearer {key[:-6]}{'x' if key[-6] != 'x' else 'y'}{key[-5:]}"},
     r"invalid|unknown|not (?:a )?valid|does not exist"),
    ("garbled_key", "a key garbled beyond recognition", lambda key: {"Authorization": "Bearer %%%garbled%%%"},
     r"invalid|unknown|malformed|not (?:a )?valid"),
)
DELETED_KEY = re.compile(r"delet|revok", re.I)
EXPIRED_TOKEN = re.compile(r"expir", re.I)

#: normalised kind -> the code of the render API's envelope and of the AI API's (R §二, A §1)
ENVELOPE_CODES: dict[ErrorKind, tuple[str, str]] = {
    ErrorKind.UNAUTHORIZED: ("unauthorized", "UNAUTHORIZED"),
    ErrorKind.INVALID_PARAMETER: ("invalid_parameter", "VALIDATION_ERROR"),
    ErrorKind.RATE_LIMITED: ("rate_limit_exceeded", "RATE_LIMIT_EXCEEDED"),
    ErrorKind.NOT_FOUND: ("not_found", "NOT_FOUND"),
    ErrorKind.INSUFFICIENT_CREDITS: ("insufficient_credits", "INSUFFICIENT_CREDITS"),
}

#: endpoints the fuzzer leaves alone: they act on the stack by design (holding the DB pool,
#: publishing leak tasks) rather than on the caller's data
FUZZ_EXCLUDED = ("/admin/hold-connections", "/admin/leak")

#: the runbook's alert rules, shipped with the reference stack (R §七)
ALERT_RULES = Path(__file__).resolve().parents[3] / "refstack" / "alerts" / "rules.yml"

#: The render API's hot queries (R §三.3, A §4.3), as refstack runs them.
HOT_QUERIES: dict[str, str] = {
    # GET /v1/videos: a user's jobs, newest first, keyset page
    "jobs by user": "SELECT * FROM jobs WHERE user_id = %(user_id)s AND kind = 'render' "
                    "ORDER BY created_at DESC, id DESC LIMIT 21",
    # GET /v1/videos?status=pending
    "jobs by user and status": "SELECT * FROM jobs WHERE user_id = %(user_id)s AND kind = 'render' "
                               "AND status = 'pending' ORDER BY created_at DESC, id DESC LIMIT 21",
    # GET /admin/jobs?status=pending,running: what is in flight (the ledger and dashboards ask this)
    "jobs by status": "SELECT * FROM jobs WHERE status IN ('pending', 'running') "
                      "ORDER BY created_at DESC LIMIT 100",
    # GET /admin/jobs: newest jobs
    "jobs by created_at": "SELECT * FROM jobs ORDER BY created_at DESC LIMIT 100",
    # GET /admin/jobs?status=..&... last day's failures (by status and created_at)
    "recent failures": "SELECT * FROM jobs WHERE status = 'failed' AND created_at > now() - interval '1 day' "
                       "ORDER BY created_at DESC LIMIT 100",
}

#: fill_jobs: rows of users named %(tag)s, one job every 39 s back from now, a fleet's status mix
FILL_JOBS_SQL = """
    WITH u AS (SELECT id, row_number() OVER () - 1 AS n FROM users WHERE name = %(tag)s)
    INSERT INTO jobs (id, user_id, kind, status, progress, cost, params, created_at, updated_at, finished_at)
    SELECT gen_random_uuid(), u.id, CASE WHEN g %% 10 = 0 THEN 'ai' ELSE 'render' END,
           s.status, CASE WHEN s.status = 'completed' THEN 100 ELSE 0 END, 10, '{}'::jsonb,
           c.at, c.at, CASE WHEN s.status IN ('pending', 'running') THEN NULL ELSE c.at + interval '1 minute' END
    FROM generate_series(1, %(rows)s) AS g
    JOIN u ON u.n = g %% %(users)s
    CROSS JOIN LATERAL (SELECT CASE
        WHEN g %% 1000 = 0 THEN 'pending' WHEN g %% 1000 = 1 THEN 'running'
        WHEN g %% 100 < 6 THEN 'failed' WHEN g %% 100 < 8 THEN 'cancelled' WHEN g %% 100 = 8 THEN 'timeout'
        ELSE 'completed' END AS status) s
    CROSS JOIN LATERAL (SELECT now() - (g * interval '39 seconds') AS at) c
"""


def _dt(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def job_from(d: dict[str, Any]) -> Job:
    """A refstack job record (render API, admin view or AI API ``data``) as a :class:`Job`."""
    out = d.get("output") if isinstance(d.get("output"), dict) else None
    return Job(
        id=str(d.get("id") or d.get("job_id")),
        state=JobState(d["status"]),
        error_code=d.get("error_code"),
        error_message=d.get("error_message"),
        progress=float(d["progress"]) if d.get("progress") is not None else None,
        attempts=int(d["attempts"]) if d.get("attempts") is not None else None,
        output=(out or {}).get("path") or d.get("output_path"),
        output_bytes=(out or {}).get("bytes") or d.get("output_bytes"),
        encoder=d.get("encoder_used"),
        worker=d.get("worker"),
        metrics={**(d.get("result") or {}), **({"cost": d["cost"]} if d.get("cost") is not None else {})},
        started_at=_dt(d.get("started_at")),
        finished_at=_dt(d.get("finished_at")),
        raw=d,
    )


class RefstackPlatform(Platform):
    name: ClassVar[str] = "refstack"
    schema: ClassVar[str | None] = "refstack"  # refstack/db.py: users, credits, jobs, ai_jobs...
    features: ClassVar[frozenset[Feature]] = frozenset(Feature)  # the reference stack has every group
    #: the model AI jobs use unless a scenario names another (the provider always serves it)
    ai_model: ClassVar[str] = AI_MODEL

    def __init__(self, endpoint: PlatformEndpoint, timeout: float = 10.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(endpoint, timeout)
        if not endpoint.admin_token:
            raise ConfigError("the reference stack's adapter needs the admin token (ADMIN_TOKEN) to see jobs; "
                              "set admin_token in the target file")
        self.transport = transport  # a mock transport in unit tests; None: real HTTP
        # every group, less what this deployment does not expose to the harness
        missing = set()
        if "assets" not in endpoint.host_dirs:
            missing.add(Feature.ASSETS)  # inputs are planted in its assets dir
        if "live" not in endpoint.urls:
            missing.add(Feature.LIVE)
        self.features = frozenset(Feature) - missing
        self.admin = Admin(endpoint.api_url, endpoint.admin_token, timeout=timeout, transport=transport)
        self._clients: dict[str | None, RenderApi] = {}

    @property
    def api_url(self) -> str:
        return self.endpoint.api_url

    @property
    def admin_token(self) -> str:
        return self.endpoint.admin_token or ""

    def close(self) -> None:
        for c in self._clients.values():
            c.close()
        self._clients.clear()
        self.admin.close()

    # -- clients ---------------------------------------------------------------------------
    def render_api(self, account: Account | None) -> RenderApi:
        """The render API as ``account`` sees it (one client per key, kept until close)."""
        key = account.api_key if account else None
        if key not in self._clients:
            self._clients[key] = RenderApi(self.api_url, key, timeout=self.timeout, transport=self.transport)
        return self._clients[key]

    def http(self, account: Account | None, **kwargs: Any) -> httpx.Client:
        headers = dict(UA)
        if account is not None and account.api_key:
            headers["Authorization"] = f"Bearer {account.api_key}"
        kwargs.setdefault("timeout", httpx.Timeout(self.timeout))
        return httpx.Client(base_url=self.api_url, headers=headers, **kwargs)

    def classify(self, resp: httpx.Response) -> ApiError | None:
        if 200 <= resp.status_code < 300:
            return None
        try:
            body = resp.json()
        except ValueError:
            body = None
        code = message = fld = None
        retry = None
        if isinstance(body, dict) and isinstance(body.get("error"), dict):  # render API envelope
            err = body["error"]
            code, message, fld, retry = err.get("code"), err.get("message"), err.get("field"), err.get("retry_after")
        elif isinstance(body, dict) and body.get("success") is False:  # AI API envelope
            code, message, fld, retry = (str(body.get("error_code") or "").lower() or None, body.get("message"),
                                         body.get("field"), body.get("retry_after"))
        header = resp.headers.get("retry-after")
        if retry is None and header:
            try:
                retry = float(header)
            except ValueError:
                retry = None
        kind = KINDS.get(code or "")
        dependency = DEPENDENCIES.get(code or "")
        if dependency:
            kind = ErrorKind.DEPENDENCY_UNAVAILABLE
        if kind is None:
            kind = {400: ErrorKind.INVALID_PARAMETER, 401: ErrorKind.UNAUTHORIZED, 402: ErrorKind.INSUFFICIENT_CREDITS,
                    404: ErrorKind.NOT_FOUND, 409: ErrorKind.CONFLICT, 413: ErrorKind.TOO_LARGE,
                    429: ErrorKind.RATE_LIMITED}.get(resp.status_code)
            if kind is None:
                kind = ErrorKind.SERVER_ERROR if resp.status_code >= 500 else ErrorKind.OTHER
        return ApiError(kind, resp.status_code, code, str(message or resp.text[:300]), fld,
                        float(retry) if retry is not None else None, dependency)

    def _call(self, call: Callable[[], httpx.Response], parse: Callable[[httpx.Response], Any] | None = None
              ) -> Answer[Any]:
        return timed(call, self.classify, parse)

    # -- core -------------------------------------------------------------------------------
    def health(self) -> Health:
        t0 = time.monotonic()
        try:
            r = httpx.get(f"{self.api_url}/health", timeout=self.timeout, headers=UA)
        except httpx.HTTPError as exc:
            return Health(False, None, (), time.monotonic() - t0, f"{type(exc).__name__}: {exc}")
        try:
            failing = tuple(HEALTH_ROLES.get(n, n) for n in r.json().get("failing", []))
        except ValueError:
            failing = ()
        return Health(r.status_code == 200, r.status_code, failing, time.monotonic() - t0, r.text[:300])

    def open_account(self, name: str = "renderchaos", credits: int | None = None) -> Account:
        u = self.admin.create_user(credits=10_000 if credits is None else credits, name=name)
        return _account(u)

    def submit(self, account: Account, request: RenderRequest) -> Answer[str]:
        return self._call(lambda: self.render_api(account).submit(self.body(request)), lambda r: r.json()["id"])

    def body(self, request: RenderRequest) -> dict[str, Any]:
        """The render API's body for ``request`` (R §二.3: template fields)."""
        extra: dict[str, Any] = dict(request.extra)
        if request.input is not None:
            extra["input_asset"] = request.input.ref
        if request.audio is not None:
            extra["audio_asset"] = request.audio.ref
        body = render_body(title=request.title, duration=request.duration, width=request.width,
                           height=request.height, **{k: v for k, v in extra.items() if k != "data"})
        if request.preset is not None:
            body["data"]["preset"] = request.preset
        body["data"].update(extra.get("data", {}))
        return body

    def job(self, account: Account, job_id: str) -> Answer[Job]:
        return self._call(lambda: self.render_api(account).get(job_id), lambda r: job_from(r.json()))

    def list_jobs(self, account: Account, limit: int = 20, status: str | None = None) -> Answer[list[Job]]:
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        return self._call(lambda: self.render_api(account).http.get("/v1/videos", params=params),
                          lambda r: [job_from(j) for j in r.json()["data"]])

    def observe_job(self, job_id: str) -> Job | None:
        d = self.admin.job(job_id)
        return None if d is None else job_from(d)

    def cancel(self, account: Account, job_id: str) -> Answer[None]:
        return self._call(lambda: self.render_api(account).cancel(job_id))

    def download(self, account: Account, job_id: str, timeout: float = 60.0) -> Answer[bytes]:
        return self._call(lambda: self.render_api(account).download(job_id, timeout=timeout), lambda r: r.content)

    def metrics(self) -> str | None:
        r = httpx.get(f"{self.api_url}/metrics", timeout=self.timeout, headers=UA)
        if r.status_code != 200:
            raise TargetError(f"GET /metrics: expected 200, got {r.status_code}: {r.text[:200]}",
                              status=r.status_code)
        return r.text

    def openapi(self) -> dict[str, Any] | None:
        r = httpx.get(f"{self.api_url}/openapi.json", timeout=self.timeout, headers=UA)
        if r.status_code != 200:
            raise TargetError(f"GET /openapi.json: expected 200, got {r.status_code}", status=r.status_code)
        return r.json()

    # -- assets -----------------------------------------------------------------------------
    def _assets_dir(self) -> Path:
        d = self.endpoint.host_dirs.get("assets")
        if d is None:
            raise TargetError("the reference stack's assets directory is unknown: the target has no 'assets' "
                              "host directory (set host_dirs.assets, or run against the reference stack)")
        return Path(d)

    def place_asset(self, source: Path, name: str | None = None) -> Asset:
        """A copy of ``source`` in the stack's assets dir (mounted at /data/assets in the API and
        workers), in a directory of its own so scenarios side by side never share a file."""
        rel = f"rc-{uuid.uuid4().hex[:10]}/{name or source.name}"
        dest = self._assets_dir() / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.parent.chmod(0o755)
        shutil.copyfile(source, dest)
        dest.chmod(0o644)
        return Asset(ref=rel, host_path=dest)

    def remove_asset(self, asset: Asset) -> None:
        if asset.host_path is not None and asset.host_path.parent.exists():
            shutil.rmtree(asset.host_path.parent)

    def missing_asset(self) -> Asset:
        rel = f"rc-missing-{uuid.uuid4().hex[:10]}/no_such_clip.mp4"
        return Asset(ref=rel, host_path=self._assets_dir() / rel)

    # -- job views, credits -----------------------------------------------------------------
    def job_counts(self) -> dict[JobState, int] | None:
        per_kind = self.admin.stats().get("jobs", {})
        out: dict[JobState, int] = {}
        for statuses in per_kind.values():
            for status, n in statuses.items():
                out[JobState(status)] = out.get(JobState(status), 0) + int(n)
        return out

    def job_charges(self, job_id: str) -> tuple[int, int] | None:
        kinds = [e["kind"] for e in self.admin.job_ledger(job_id)["entries"]]
        return kinds.count("charge"), kinds.count("refund")

    def balance(self, account: Account) -> int | None:
        return int(self.admin.user(account.id)["credits"])

    def ledger_total(self, account: Account) -> int | None:
        # grants, charges (< 0), refunds and adjustments: the balance must equal their sum
        return sum(int(e["amount"]) for e in self.admin.user_ledger(account.id)["entries"])

    def charges_of(self, account: Account) -> int:
        """Credits charged to ``account`` in total, by its ledger."""
        return -sum(int(e["amount"]) for e in self.admin.user_ledger(account.id)["entries"] if e["kind"] == "charge")

    def set_credits(self, account: Account, credits: int) -> None:
        self.admin.set_credits(account.id, credits)

    def job_cost(self, answer: Answer[Any]) -> int:
        """The cost the platform quoted when it accepted a job."""
        assert answer.response is not None
        d = answer.response.json()
        return int(d["cost"] if "cost" in d else d["data"]["cost"])

    # -- credentials (R §二.1, A §1.1) ------------------------------------------------------
    def bad_credentials(self, account: Account) -> list[BadCredential]:
        key = account.api_key or ""
        return [BadCredential(n, d, h(key), re.compile(p, re.I)) for n, d, h, p in _BAD_CREDENTIALS]

    def revoke_credentials(self, account: Account) -> Account:
        """A second key of ``account``, deleted: the key a client still sends after it was revoked."""
        k = self.admin.new_key(account.id)
        self.admin.delete_key(k["key_id"])
        return Account(account.id, k["api_key"], account.credits, {**account.extra, "key_id": k["key_id"]})

    def expired_token(self, account: Account) -> str:
        return self.admin.token(account.id, expired=True)

    def rotate_key(self, account: Account) -> Account:
        k = self.admin.new_key(account.id, rotate=True)
        return Account(account.id, k["api_key"], account.credits, {**account.extra, "key_id": k["key_id"]})

    def login(self, account: Account) -> httpx.Response:
        """POST the AI API's login with the account's phone and password."""
        with self.http(None) as c:
            return c.post("/api/v1/auth/login", json={"phone": account.extra.get("phone"),
                                                      "password": account.extra.get("password")})

    def token_of(self, login: httpx.Response) -> str:
        return login.json()["data"]["access_token"]

    def auth_headers(self, secret: str) -> dict[str, str]:
        """The headers a client sends with ``secret`` (an API key or an access token)."""
        return {"Authorization": f"Bearer {secret}"}

    def auth_probes(self, ai_token: str | None = None) -> list[tuple[str, bool, str]]:
        """(what, is_ai, path) of requests that must be authenticated before anything else:
        the render list and an AI job that does not exist (a 401, never a 404)."""
        return [("render list", False, "/v1/videos"), ("AI job", True, f"/api/v1/ai/jobs/{uuid.uuid4()}")]

    def authenticated_probes(self, api_key: str, token: str) -> list[tuple[str, dict[str, str], str, int]]:
        """(what, headers, path, status) that must succeed with fresh credentials."""
        return [("new key on the render API", {"Authorization": f"Bearer {api_key}"}, "/v1/videos", 200),
                ("fresh token on the AI API (unknown conversation: 404, not 401)",
                 {"Authorization": f"Bearer {token}"}, f"/api/v1/ai/conversations/{uuid.uuid4()}", 404)]

    # -- HTTP operations (floods, injection, existence leaks) ------------------------------
    def endpoints(self, account: Account | None) -> list[Endpoint]:
        return [Endpoint("GET", "/v1/videos?limit=1", "list the caller's renders")]

    def light_read(self) -> Endpoint:
        """A cheap authenticated read (flood target, latency probe)."""
        return Endpoint("GET", "/v1/videos?limit=1", "list the caller's newest render")

    def owned_resources(self, job_id: str, ai_job_id: str, conversation_id: str) -> list[tuple[str, str, str, str]]:
        """(what, method, path of the owner's resource, path of one that does not exist): another
        user's id must be indistinguishable from an unknown one (api.not_found)."""
        unknown = str(uuid.uuid4())
        return [
            ("render job", "GET", f"/v1/videos/{job_id}", f"/v1/videos/{unknown}"),
            ("render job, malformed id", "GET", f"/v1/videos/{job_id}", "/v1/videos/not-a-job-id"),
            ("cancel", "DELETE", f"/v1/videos/{job_id}", f"/v1/videos/{unknown}"),
            ("download", "GET", f"/v1/videos/{job_id}/download", f"/v1/videos/{unknown}/download"),
            ("AI job", "GET", f"/api/v1/ai/jobs/{ai_job_id}", f"/api/v1/ai/jobs/{unknown}"),
            ("render job on the AI API", "GET", f"/api/v1/ai/jobs/{job_id}", f"/api/v1/ai/jobs/{unknown}"),
            ("conversation", "GET", f"/api/v1/ai/conversations/{conversation_id}",
             f"/api/v1/ai/conversations/{unknown}"),
        ]

    def invalid_requests(self, account: Account | None = None, big: int = 70_000) -> list[InvalidRequest]:
        """R §二.3 / A §1.3: bodies that must be refused 400 naming the field (``big`` above
        MAX_BODY_BYTES, 64 KiB by default)."""
        ok_data = {"title": "Test", "duration": 1, "width": 320, "height": 240, "price": 99}
        j = lambda o: json.dumps(o).encode()  # noqa: E731
        ai = {"model": AI_MODEL}
        cases: list[tuple[str, str, bytes, str]] = [
            ("missing template_id", "/v1/videos", j({"data": {"title": "Test"}}), "template_id"),
            ("template_id: 123", "/v1/videos", j({"template_id": 123, "data": ok_data}), "template_id"),
            ("data.price: \"99\"", "/v1/videos",
             j({"template_id": "template_abc123", "data": {**ok_data, "price": "99"}}), "data.price"),
            ("malformed JSON", "/v1/videos", b'{"template_id": "template_abc123", "data": {', "body"),
            ("oversize body", "/v1/videos",
             j({"template_id": "template_abc123", "data": {**ok_data, "title": "a" * big}}), "body"),
            ("empty body", "/v1/videos", b"", "body"),
            ("missing model", "/api/v1/ai/jobs", j({"prompt": "hello"}), "model"),
            ("model: 123", "/api/v1/ai/jobs", j({"model": 123, "prompt": "hello"}), "model"),
            ("prompt: [\"hi\"]", "/api/v1/ai/jobs", j({**ai, "prompt": ["hi"]}), "prompt"),
            ("malformed JSON (AI)", "/api/v1/ai/jobs", b'{"model": "x", "prompt": ', "body"),
            ("oversize body (AI)", "/api/v1/ai/jobs", j({**ai, "prompt": "a" * big}), "body"),
            ("login without phone", "/api/v1/auth/login", j({"password": "x"}), "phone"),
        ]
        out = []
        for name, path, body, fld in cases:
            def send(c: httpx.Client, path: str = path, body: bytes = body) -> httpx.Response:
                return c.post(path, content=body, headers={"Content-Type": "application/json"})
            out.append(InvalidRequest(f"{name} -> {path}", send, fld))
        return out

    def is_ai_path(self, path: str) -> bool:
        return path.startswith("/api/")

    def injection_requests(self, payload: str, victim_phone: str | None, victim_ai_job: str
                           ) -> list[tuple[str, str, str, dict[str, Any], str]]:
        """(client, method, path, request kwargs, kind) with ``payload`` in every string field,
        id and query of both APIs. client: 'r' render tenant, 'a' AI tenant, '-' anonymous;
        kind: 'write' (no 5xx, never accepted for a zero-credit tenant), 'read' (must be 4xx),
        'list' (no rows of other users)."""
        valid = render_body(duration=0.5)
        d = valid["data"]
        q = lambda s: quote(s, safe="")  # noqa: E731
        p = payload
        return [
            ("r", "POST", "/v1/videos", {"json": {**valid, "template_id": p}}, "write"),
            ("r", "POST", "/v1/videos", {"json": {**valid, "data": {**d, "title": p, "preset": p, p[:30]: p}}}, "write"),
            ("r", "POST", "/v1/videos", {"json": {**valid, "data": {**d, "colours": [p]}}}, "write"),
            ("r", "POST", "/v1/videos", {"json": {**valid, "input_asset": p, "audio_asset": p}}, "write"),
            ("r", "GET", f"/v1/videos/{q(p)}", {}, "read"),
            ("r", "DELETE", f"/v1/videos/{q(p)}", {}, "read"),
            ("r", "GET", f"/v1/videos/{q(p)}/download", {}, "read"),
            ("r", "GET", "/v1/videos", {"params": {"status": p}}, "list"),
            ("r", "GET", "/v1/videos", {"params": {"cursor": p}}, "list"),
            ("r", "GET", "/v1/videos", {"params": {"limit": p}}, "list"),
            ("a", "POST", "/api/v1/ai/jobs", {"json": {"model": p, "prompt": "x"}}, "write"),
            ("a", "POST", "/api/v1/ai/jobs", {"json": {"model": AI_MODEL, "prompt": p}}, "write"),
            ("a", "POST", "/api/v1/ai/jobs", {"json": {"model": AI_MODEL, "prompt": "x", "conversation_id": p}},
             "write"),
            ("a", "GET", f"/api/v1/ai/jobs/{q(p)}", {}, "read"),
            ("a", "GET", f"/api/v1/ai/conversations/{q(p)}", {}, "read"),
            ("-", "POST", "/api/v1/auth/login", {"json": {"phone": p, "password": p}}, "read"),
            ("-", "POST", "/api/v1/auth/login", {"json": {"phone": victim_phone, "password": p}}, "read"),
            ("-", "GET", "/v1/videos", {"headers": {"Authorization": f"Bearer {p}".encode()}}, "read"),
            ("-", "GET", f"/api/v1/ai/jobs/{victim_ai_job}", {"headers": {"Authorization": f"Bearer {p}".encode()}},
             "read"),
        ]

    def conversation_of(self, answer: Answer[Any]) -> str:
        """The conversation an accepted AI job (:meth:`ai_submit`) belongs to."""
        assert answer.response is not None
        return str(answer.response.json()["data"]["conversation_id"])

    def job_params(self, job_id: str) -> dict[str, Any]:
        """The parameters the platform stored for a job (payloads must be stored literally)."""
        return (self.admin.job(job_id) or {}).get("params") or {}

    # -- the runbooks' envelopes (extra conformance check) ---------------------------------
    def envelope_problem(self, resp: httpx.Response, status: int, code: str | ErrorKind, *,
                         ai: bool | None = None) -> str | None:
        """None if ``resp`` is ``status`` with the documented envelope carrying ``code``: the render
        API's ``{"error": {"code", "message"}}`` (R §二) or the AI API's
        ``{"success": false, "message", "error_code"}`` (A §1). ``code`` may be a normalised
        kind: then each API's own code for it (``invalid_parameter`` / ``VALIDATION_ERROR``)."""
        if ai is None:
            ai = self.is_ai_path(resp.request.url.path)
        if isinstance(code, ErrorKind):
            code = ENVELOPE_CODES[code][1 if ai else 0]
        try:
            body = resp.json()
        except ValueError:
            return f"{resp.status_code} non-JSON body {resp.text[:120]!r}"
        if resp.status_code != status:
            return f"{resp.status_code} {resp.text[:200]}"
        if ai:
            ok = isinstance(body, dict) and body.get("success") is False \
                and body.get("error_code") == code.upper() and isinstance(body.get("message"), str)
            want = f'{{"success": false, "message", "error_code": "{code.upper()}"}}'
        else:
            err = body.get("error") if isinstance(body, dict) else None
            ok = isinstance(err, dict) and err.get("code") == code and isinstance(err.get("message"), str)
            want = f'{{"error": {{"code": "{code}", "message"}}}}'
        return None if ok else f"envelope {resp.text[:200]} is not {want}"

    def envelope_field(self, resp: httpx.Response, name: str) -> Any:
        """A field of the error envelope as the body carries it (``retry_after``, ``field``), or
        ``None``: the render API nests it under ``error``, the AI API keeps it at the top."""
        try:
            body = resp.json()
        except ValueError:
            return None
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            return body["error"].get(name)
        return body.get(name) if isinstance(body, dict) else None

    # -- AI API (A §1, A §2, A §3) -------------------------------------------------------
    def ai_api(self, account: Account) -> AiApi:
        """The AI API with an access token the admin API issues for ``account`` (caller closes)."""
        return AiApi.for_user(self.api_url, self.admin, account.id, timeout=self.timeout)

    def ai_submit(self, account: Account, prompt: str = "hello", model: str = AI_MODEL, **extra: Any
                  ) -> Answer[str]:
        """POST an AI job with the account's API key (the AI API takes keys and tokens)."""
        body = {"model": model, "prompt": prompt, **extra}
        return self._call(lambda: self.render_api(account).http.post("/api/v1/ai/jobs", json=body),
                          lambda r: r.json()["data"]["job_id"])

    def ai_job(self, account: Account, job_id: str) -> Answer[Job]:
        """The AI job as its owner sees it, read with the account's API key (a client polling it)."""
        return self._call(lambda: self.render_api(account).http.get(f"/api/v1/ai/jobs/{job_id}"),
                          lambda r: job_from(r.json()["data"]))

    def ai_models(self, account: Account) -> Answer[list[AiModel]]:
        """The models the AI API lists for ``account`` now, each with its availability at the
        provider (A §3.2: the list reflects a model the provider no longer serves)."""
        return self._call(lambda: self.render_api(account).http.get("/api/v1/ai/models"),
                          lambda r: [AiModel(str(m["id"]), m["available"] is True) for m in r.json()["data"]])

    # -- raw downloads (clients that drive their own socket) ------------------------------
    def download_request(self, account: Account, job_id: str) -> tuple[str, dict[str, str]]:
        """The download of ``job_id`` as raw HTTP: (request path, headers carrying ``account``'s
        credentials), for a client that must own the socket (a download aborted mid-stream, a TCP
        RST). Sent as ``GET`` to the API's host and port (or a fault-proxy route in front of it)."""
        return f"/v1/videos/{quote(job_id, safe='')}/download", {**UA, "Authorization": f"Bearer {account.api_key}"}

    # -- test hooks (reference stack only) -----------------------------------------------
    def hold_db_connections(self, seconds: int, count: int | None = None) -> "HeldPool":
        """Check out ``count`` (default: pool_size + max_overflow) pooled connections of the API
        process that answers, for ``seconds`` (A §4.1). The hold starts after the answer."""
        body: dict[str, Any] = {"seconds": seconds}
        if count is not None:
            body["count"] = count
        resp = self.admin.http.post("/admin/hold-connections", json=body)
        if resp.status_code != 202:
            raise TargetError(f"hold-connections answered {resp.status_code}: {resp.text[:300]}",
                              status=resp.status_code)
        d = resp.json()
        return HeldPool(pid=d.get("pid"), count=int(d.get("count") or count or 0), seconds=int(d.get("seconds", seconds)))

    # -- single operations as endpoints (scenarios that time raw requests themselves, with a
    #    client-side timeout of their own: run.platform.http(account, timeout=...)) ---------
    def job_endpoint(self, job_id: str) -> Endpoint:
        """Read one render job as its owner."""
        return Endpoint("GET", f"/v1/videos/{job_id}", "read one render job")

    def cancel_endpoint(self, job_id: str) -> Endpoint:
        """Cancel one render job as its owner (R §二: DELETE the job)."""
        return Endpoint("DELETE", f"/v1/videos/{job_id}", "cancel a render job")

    def provider_read(self) -> Endpoint:
        """A cheap authenticated read that waits on the AI provider (the model list): a slow
        provider makes it slow (SlowAPIResponse)."""
        return Endpoint("GET", "/api/v1/ai/models", "list the AI models (asks the provider)")

    def metrics_endpoint(self) -> Endpoint:
        """Where a Prometheus scrapes the API (job ``video-api`` in the runbook's rules)."""
        return Endpoint("GET", "/metrics", "Prometheus exposition of the API")

    def alert_rules_file(self) -> Path:
        """The runbook's Prometheus alert rules for this platform (R §七)."""
        return ALERT_RULES

    # -- the platform's database (capability ``database``: the harness reads it directly) --
    def db_application(self, role: str) -> str:
        """A LIKE pattern on ``pg_stat_activity.application_name`` for the sessions of ``role``."""
        return {"api": "refstack-api", "worker": "refstack-worker"}.get(role, "refstack%")

    def hot_queries(self) -> dict[str, str]:
        """The render API's hot queries as it runs them (R §三.3, A §4.3), with ``%(user_id)s``
        where they are per user. Keep in step with refstack/api/app.py list_videos and
        refstack/api/admin.py admin_jobs."""
        return dict(HOT_QUERIES)

    def fill_jobs(self, conn: Any, tag: str, rows: int, users: int) -> dict[str, str]:
        """Bulk-insert ``rows`` jobs of ``users`` new users (named ``tag``) created over 90 days
        with the status mix of a real fleet (pending rare), plus one user with only a few old
        jobs; ANALYZE. Returns ``{"many": user id with rows/users jobs, "few": user id with 3}``."""
        conn.execute("INSERT INTO users (id, name) SELECT gen_random_uuid(), %s FROM generate_series(1, %s)",
                     (tag, users))
        conn.execute(FILL_JOBS_SQL, {"tag": tag, "rows": rows, "users": users})
        few = conn.execute("INSERT INTO users (id, name) VALUES (gen_random_uuid(), %s) RETURNING id",
                           (tag,)).fetchone()[0]
        conn.execute("INSERT INTO jobs (id, user_id, kind, status, progress, cost, params, created_at, updated_at, "
                     "finished_at) SELECT gen_random_uuid(), %s, 'render', 'completed', 100, 10, '{}'::jsonb, "
                     "now() - interval '100 days' + g * interval '1 hour', now() - interval '100 days', "
                     "now() - interval '100 days' FROM generate_series(1, 3) AS g", (few,))
        conn.execute("ANALYZE jobs")
        many = conn.execute("SELECT user_id FROM jobs JOIN users ON users.id = jobs.user_id WHERE users.name = %s "
                            "AND user_id <> %s LIMIT 1", (tag, few)).fetchone()[0]
        return {"many": str(many), "few": str(few)}

    def remove_filled_jobs(self, conn: Any, tag: str) -> None:
        """Undo :meth:`fill_jobs` (jobs cascade with their users)."""
        conn.execute("DELETE FROM users WHERE name = %s", (tag,))

    def deadlock_statements(self, account: Account, job_id: str) -> tuple[tuple[str, tuple[Any, ...]], ...]:
        """The harness's side of the deadlock in refstack's README: first lock the owner's
        credits row (a cancel of ``job_id`` locks the job, then waits for it), then update
        the job (opposite lock order)."""
        return (("UPDATE credits SET balance = balance WHERE user_id = %s", (account.id,)),
                ("UPDATE jobs SET updated_at = now() WHERE id = %s", (job_id,)))

    def db_snapshot(self, conn: Any) -> tuple[dict[str, str], dict[str, int]]:
        """Every job's status and every account's balance, read from the database (the backup
        drill compares them before and after a restore)."""
        jobs = dict(conn.execute("SELECT id::text, status FROM jobs").fetchall())
        balances = {u: int(b) for u, b in conn.execute("SELECT user_id::text, balance FROM credits").fetchall()}
        return jobs, balances

    def leak(self, count: int, mb: int) -> httpx.Response:
        """Publish tasks that each leak ``mb`` MiB in the worker (worker.memory_leak)."""
        return self.admin.leak(count, mb)

    def leak_observations(self) -> list[dict[str, Any]]:
        return self.admin.leak_observations()

    def worker_container(self, job: Job, workers: list[Any]) -> Any | None:
        """The worker container running ``job`` (Celery names its consumer WORKER_NAME:pid)."""
        for w in workers:
            name = getattr(w, "env", {}).get("WORKER_NAME")
            if name and str(job.worker or "").startswith(name + ":"):
                return w
        return None

    def fuzz_options(self, open_account: Callable[..., Account]) -> dict[str, Any]:
        """Fuzz as a zero-credit tenant (nothing fuzzed is ever accepted as a job: no render can
        tie up the workers), with the admin token for the admin operations, a second user as the
        target of admin path ids, and a valid login body; the test hooks (hold the database pool,
        leak tasks) are left alone."""
        fuzzer = open_account("api.fuzz", credits=0)
        other = open_account("api.fuzz path ids", credits=0)
        return {"base_url": self.api_url, "credentials": {"apiKey": fuzzer.api_key or "", "adminToken": self.admin_token},
                "base_bodies": {"login": {"phone": fuzzer.extra.get("phone"), "password": fuzzer.extra.get("password")}},
                "path_parameters": {"user_id": other.id}, "exclude_tags": ("admin-faults",)}

    def fuzz_excluded(self) -> tuple[str, ...]:
        return FUZZ_EXCLUDED

    def user(self, account: Account) -> dict[str, Any]:
        return self.admin.user(account.id)


@dataclass(frozen=True)
class HeldPool:
    """A hold on the API's database pool (hold_db_connections)."""

    pid: int | None  # the API process whose pool is held
    count: int  # connections held
    seconds: int


@dataclass(frozen=True)
class AiModel:
    """One model of the AI API's list (A §3.2)."""

    id: str
    available: bool


def _account(u: User) -> Account:
    return Account(id=u.user_id, api_key=u.api_key, credits=u.credits,
                   extra={"key_id": u.key_id, "phone": u.phone, "password": u.password})
