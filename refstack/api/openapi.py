"""The API's OpenAPI document: what every operation accepts and every answer it can give.

The handlers parse their bodies by hand (:mod:`refstack.api.validation`) so that every 400 names
its field; FastAPI therefore cannot infer the contract from type hints. It is written here
instead, next to nothing else, and attached to the routes by operation id::

    @app.post("/v1/videos", status_code=202, **doc("create_video"))

:func:`doc` gives the decorator keywords (operation id, tag, request body, query parameters,
security, every status code with its schema); :func:`install` adds the shared components
(schemas, security schemes) and drops what FastAPI would otherwise claim but the API never
answers (422). The schemas say what the code accepts, no more and no less: a fuzzer reading
them (schemathesis) judges the implementation, not our hopes.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from refstack.api.validation import MAX_DURATION, NAME_MAX
from refstack.db.schema import JOB_KINDS, JOB_STATUSES, LEDGER_KINDS

#: admin-issued tokens live at most this long (mirrors refstack.api.admin)
MAX_TOKEN_TTL_SECONDS = 10 * 365 * 86400


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` or null (OpenAPI 3.1 / JSON Schema 2020-12)."""
    if "type" in schema and isinstance(schema["type"], str):
        return {**schema, "type": [schema["type"], "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


STR = {"type": "string"}
INT = {"type": "integer"}
NUM = {"type": "number"}
TIME = {"type": "string", "format": "date-time"}
UUID = {"type": "string", "format": "uuid"}
#: no NUL (the API rejects it: Postgres text cannot hold it) and at least one non-blank character
NO_NUL = "^[^\\u0000]*$"
NON_BLANK_NO_NUL = "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"

# ------------------------------------------------------------------ components: envelopes

SCHEMAS: dict[str, dict[str, Any]] = {
    "RenderError": {
        "type": "object", "required": ["error"],
        "description": "Render and admin API error envelope (R §二).",
        "properties": {"error": {
            "type": "object", "required": ["code", "message"],
            "properties": {
                "code": {**STR, "description": "stable machine code: invalid_parameter, unauthorized, "
                                               "insufficient_credits, not_found, conflict, rate_limit_exceeded, "
                                               "database_unavailable, broker_unavailable, busy..."},
                "message": {**STR, "description": "what was wrong and what to do"},
                "field": {**STR, "description": "the request field a 400 is about (body for the body itself)"},
                "retry_after": {**INT, "minimum": 1, "description": "seconds; also in Retry-After"},
            }}},
    },
    "AiError": {
        "type": "object", "required": ["success", "message", "error_code"],
        "description": "AI API error envelope (A §1).",
        "properties": {
            "success": {"const": False},
            "message": STR,
            "error_code": {**STR, "description": "UNAUTHORIZED, NOT_FOUND, VALIDATION_ERROR, INSUFFICIENT_CREDITS, "
                                                 "RATE_LIMITED, CONFLICT, ..."},
            "field": STR,
            "retry_after": {**INT, "minimum": 1},
        },
    },
    # ------------------------------------------------------------------ jobs
    "Job": {
        "type": "object",
        "required": ["id", "kind", "status", "progress", "attempts", "cost", "created_at"],
        "properties": {
            "id": UUID,
            "kind": {"enum": list(JOB_KINDS)},
            "status": {"enum": list(JOB_STATUSES)},
            "progress": {**NUM, "minimum": 0, "maximum": 100},
            "error_code": nullable(STR),
            "error_message": nullable(STR),
            "encoder_used": nullable(STR),
            "attempts": {**INT, "minimum": 0},
            "cost": INT,
            "created_at": nullable(TIME),
            "started_at": nullable(TIME),
            "finished_at": nullable(TIME),
        },
    },
    "VideoOutput": {
        "type": "object", "required": ["path", "download_url"],
        "properties": {"path": STR, "bytes": nullable(INT), "download_url": STR, "width": nullable(INT),
                       "height": nullable(INT), "duration": nullable(NUM)},
    },
    "Video": {"allOf": [ref("Job"), {
        "type": "object", "required": ["template_id", "output"],
        "properties": {"template_id": nullable(STR), "output": nullable(ref("VideoOutput"))}}]},
    "VideoList": {
        "type": "object", "required": ["data", "next_cursor"],
        "properties": {"data": {"type": "array", "items": ref("Video")},
                       "next_cursor": nullable({**STR, "description": "pass as ?cursor= for the next page"})},
    },
    "AiJob": {"allOf": [ref("Job"), {
        "type": "object", "required": ["job_id", "model", "conversation_id", "result"],
        "properties": {"job_id": UUID, "model": nullable(STR), "conversation_id": nullable(STR),
                       "result": nullable({"type": "object", "description": "{output, model, usage} once completed"})}}]},
    "AiJobEnvelope": {"type": "object", "required": ["success", "data"],
                      "properties": {"success": {"const": True}, "data": ref("AiJob")}},
    "LoginEnvelope": {
        "type": "object", "required": ["success", "data"],
        "properties": {"success": {"const": True}, "data": {
            "type": "object", "required": ["access_token", "token_type", "expires_at", "expires_in"],
            "properties": {"access_token": STR, "token_type": {"const": "bearer"}, "expires_at": TIME,
                           "expires_in": INT}}},
    },
    "ModelsEnvelope": {
        "type": "object", "required": ["success", "data"],
        "properties": {"success": {"const": True}, "data": {"type": "array", "items": {
            "type": "object", "required": ["id", "available"],
            "properties": {"id": nullable(STR), "available": {"type": "boolean"}}}}},
    },
    "ConversationEnvelope": {
        "type": "object", "required": ["success", "data"],
        "properties": {"success": {"const": True}, "data": {
            "type": "object", "required": ["conversation_id", "title", "created_at", "messages"],
            "properties": {
                "conversation_id": UUID, "title": STR, "created_at": nullable(TIME),
                "messages": {"type": "array", "items": {
                    "type": "object", "required": ["role", "content", "job_id", "created_at"],
                    "properties": {"role": {"enum": ["user", "assistant"]}, "content": STR,
                                   "job_id": nullable(STR), "created_at": nullable(TIME)}}}}}},
    },
    # ------------------------------------------------------------------ health
    "Health": {
        "type": "object", "required": ["status", "failing", "checks"],
        "properties": {
            "status": {"enum": ["ok", "unhealthy"]},
            "failing": {"type": "array", "items": {"enum": ["database", "redis", "broker"]}},
            "checks": {"type": "object", "additionalProperties": {
                "type": "object", "required": ["ok"], "properties": {"ok": {"type": "boolean"}, "error": STR}}},
            "message": STR,
        },
    },
    # ------------------------------------------------------------------ admin
    "CreatedUser": {
        "type": "object", "required": ["user_id", "key_id", "api_key", "phone", "password", "credits"],
        "properties": {"user_id": UUID, "key_id": UUID, "api_key": STR, "phone": STR, "password": STR,
                       "credits": INT},
    },
    "User": {
        "type": "object", "required": ["user_id", "name", "phone", "credits", "keys"],
        "properties": {
            "user_id": UUID, "name": STR, "phone": nullable(STR), "credits": nullable(INT),
            "keys": {"type": "array", "items": {
                "type": "object", "required": ["key_id", "prefix", "deleted"],
                "properties": {"key_id": UUID, "prefix": STR, "deleted": {"type": "boolean"}}}}},
    },
    "NewKey": {"type": "object", "required": ["key_id", "api_key", "deleted_keys"],
               "properties": {"key_id": UUID, "api_key": STR, "deleted_keys": {**INT, "minimum": 0}}},
    "DeletedKey": {"type": "object", "required": ["key_id", "deleted"],
                   "properties": {"key_id": STR, "deleted": {"const": True}}},
    "Balance": {"type": "object", "required": ["user_id", "credits"],
                "properties": {"user_id": STR, "credits": INT}},
    "IssuedToken": {"type": "object", "required": ["access_token", "expires_at"],
                    "properties": {"access_token": STR, "expires_at": TIME}},
    "LedgerEntry": {
        "type": "object", "required": ["id", "user_id", "job_id", "kind", "amount", "created_at"],
        "properties": {"id": INT, "user_id": UUID, "job_id": nullable(STR), "kind": {"enum": list(LEDGER_KINDS)},
                       "amount": INT, "created_at": TIME},
    },
    "Ledger": {"type": "object", "required": ["entries"],
               "properties": {"entries": {"type": "array", "items": ref("LedgerEntry")}}},
    "JobLedger": {"type": "object", "required": ["entries", "charged", "refunded"],
                  "properties": {"entries": {"type": "array", "items": ref("LedgerEntry")},
                                 "charged": INT, "refunded": INT}},
    "AdminJob": {"allOf": [ref("Job"), {
        "type": "object",
        "required": ["user_id", "params", "result", "output_path", "output_bytes", "worker", "conversation_id"],
        "properties": {"user_id": UUID, "params": {"type": "object"}, "result": nullable({"type": "object"}),
                       "output_path": nullable(STR), "output_bytes": nullable(INT), "worker": nullable(STR),
                       "conversation_id": nullable(STR)}}]},
    "AdminJobList": {"type": "object", "required": ["data"],
                     "properties": {"data": {"type": "array", "items": ref("AdminJob")}}},
    "Stats": {"type": "object", "required": ["jobs"],
              "properties": {"jobs": {"type": "object", "description": "kind -> status -> count",
                                      "additionalProperties": {"type": "object",
                                                               "additionalProperties": INT}}}},
    "LeakPublished": {"type": "object", "required": ["published", "mb"],
                      "properties": {"published": INT, "mb": INT}},
    "LeakObservations": {"type": "object", "required": ["observations"],
                         "properties": {"observations": {"type": "array", "items": {"type": "object"}}}},
    "HeldConnections": {"type": "object", "required": ["pid", "count", "seconds"],
                        "properties": {"pid": INT, "count": INT, "seconds": INT}},
    "Workers": {
        "type": "object", "required": ["workers"],
        "properties": {"workers": {"type": "array", "items": {
            "type": "object", "required": ["worker", "pid", "job_id", "kind", "at"],
            "properties": {"worker": STR, "pid": INT, "job_id": STR, "kind": STR, "at": NUM}}}},
    },
    # ------------------------------------------------------------------ request bodies
    "VideoRequest": {
        "type": "object", "required": ["template_id", "data"],
        "description": "R §二.3: template_id a string, data an object, numbers as numbers.",
        "properties": {
            "template_id": {**STR, "pattern": "^[A-Za-z0-9_.:-]{1,128}$", "maxLength": 128},
            "data": {
                "type": "object",
                "description": "the template's fields; other keys are kept and given to the template",
                "properties": {
                    "title": nullable({**STR, "maxLength": 200, "pattern": NO_NUL}),
                    "width": nullable({**INT, "minimum": 16, "maximum": 3840, "multipleOf": 2}),
                    "height": nullable({**INT, "minimum": 16, "maximum": 2160, "multipleOf": 2}),
                    "duration": nullable({**NUM, "minimum": 0.1, "maximum": MAX_DURATION}),
                    "fps": nullable({**INT, "minimum": 1, "maximum": 60}),
                    "price": nullable({**NUM, "minimum": 0, "maximum": 1e12}),
                    "colours": nullable({"anyOf": [ref("Colour"), {"type": "array", "maxItems": 8,
                                                                   "items": ref("Colour")}]}),
                    "colors": nullable({"anyOf": [ref("Colour"), {"type": "array", "maxItems": 8,
                                                                  "items": ref("Colour")}]}),
                    "preset": {"description": "ffmpeg x264 preset; other values fall back to veryfast"},
                },
            },
            "input_asset": nullable(ref("AssetPath")),
            "audio_asset": nullable(ref("AssetPath")),
        },
    },
    "Colour": {**STR, "pattern": "^(?:[A-Za-z]{3,20}|#[0-9A-Fa-f]{6})$"},
    "AssetPath": {
        **STR, "minLength": 1, "maxLength": 1024, "pattern": NON_BLANK_NO_NUL,
        "description": f"a path relative to the assets directory, without '..', components of at most "
                       f"{NAME_MAX} bytes; the file must exist and be readable (else 400 input_not_found / "
                       "input_permission_denied)",
    },
    "AiJobRequest": {
        "type": "object", "required": ["model", "prompt"],
        "properties": {
            "model": {**STR, "pattern": "^[A-Za-z0-9_.:/-]{1,128}$", "maxLength": 128},
            "prompt": {**STR, "minLength": 1, "maxLength": 20000, "pattern": NON_BLANK_NO_NUL},
            "conversation_id": nullable({**STR, "maxLength": 64, "pattern": NO_NUL,
                                         "description": "an existing conversation of this user (else 404)"}),
        },
    },
    "LoginRequest": {
        "type": "object", "required": ["phone", "password"],
        "properties": {"phone": {**STR, "pattern": "^\\+?[0-9]{5,20}$", "maxLength": 32},
                       "password": {**STR, "minLength": 1, "maxLength": 200, "pattern": NON_BLANK_NO_NUL}},
    },
    "CreateUserRequest": {
        "type": "object",
        "properties": {
            "credits": {**INT, "minimum": 0, "maximum": 10**12, "default": 1000},
            "name": nullable({**STR, "maxLength": 200, "pattern": NO_NUL}),
            "phone": nullable({**STR, "maxLength": 200, "pattern": NO_NUL,
                               "description": "unique; a phone already taken is 409"}),
            "password": nullable({**STR, "maxLength": 200, "pattern": NO_NUL}),
        },
    },
    "SetCreditsRequest": {"type": "object", "required": ["credits"],
                          "properties": {"credits": {**INT, "minimum": 0, "maximum": 10**12}}},
    "IssueTokenRequest": {
        "type": "object",
        "properties": {
            "expired": {"description": "any JSON value; a truthy one issues a token that expired a minute ago"},
            "ttl_seconds": {**INT, "minimum": 1, "maximum": MAX_TOKEN_TTL_SECONDS,
                            "description": "lifetime; TOKEN_TTL_SECONDS when absent"},
        },
    },
    "LeakRequest": {"type": "object", "properties": {"count": {**INT, "minimum": 1, "maximum": 10000, "default": 1},
                                                     "mb": {**INT, "minimum": 1, "maximum": 512, "default": 5}}},
    "HoldConnectionsRequest": {
        "type": "object",
        "properties": {"count": {**INT, "minimum": 1, "maximum": 1000, "description": "default pool + overflow"},
                       "seconds": {**INT, "minimum": 1, "maximum": 600, "default": 10}}},
}

SECURITY_SCHEMES = {
    "apiKey": {"type": "http", "scheme": "bearer",
               "description": "render / AI API: an API key (rk_...) or, on the AI API, a login token (tk_...)"},
    "adminToken": {"type": "http", "scheme": "bearer", "description": "the admin API: $ADMIN_TOKEN"},
}

# ------------------------------------------------------------------ responses

_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "string"}}}
_AUTHENTICATE = {"WWW-Authenticate": {"schema": {"type": "string"}}}
_DESCRIPTIONS = {
    400: "invalid_parameter with the field (malformed, empty or oversize body: field 'body')",
    401: "unauthorized: the message names the mistake (missing header, misspelt, no Bearer, whitespace, "
         "deleted or unknown key, expired token)",
    402: "insufficient_credits",
    403: "the admin API is disabled (empty ADMIN_TOKEN)",
    404: "not_found (someone else's resource is indistinguishable from a missing one)",
    409: "conflict: a state that does not allow it, a duplicate, or a deadlock still failing after retries",
    410: "output_missing: the job completed but its output file is gone",
    429: "rate_limit_exceeded (per key, or per client IP)",
    503: "a dependency is unavailable (database_unavailable, database_timeout, broker_unavailable, "
         "rate_limiter_unavailable, provider_unavailable, redis_unavailable, busy); retry after Retry-After",
}


def _error(status: int, envelope: str) -> dict[str, Any]:
    out: dict[str, Any] = {"description": _DESCRIPTIONS[status],
                           "content": {"application/json": {"schema": ref(envelope)}}}
    if status in (429, 503):
        out["headers"] = dict(_RETRY_AFTER)
    elif status == 409:
        out["headers"] = dict(_RETRY_AFTER)  # only on a deadlock
    elif status == 401:
        out["headers"] = dict(_AUTHENTICATE)
    return out


def _ok(description: str, schema: str, *, headers: dict | None = None, links: dict | None = None,
        media: str = "application/json") -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": {media: {"schema": ref(schema)}}}
    if headers:
        out["headers"] = headers
    if links:
        out["links"] = links
    return out


def _link(operation_id: str, **parameters: str) -> dict[str, Any]:
    return {"operationId": operation_id, "parameters": parameters}


def _body(schema: str, *, required: bool = True) -> dict[str, Any]:
    return {"requestBody": {"required": required, "content": {"application/json": {"schema": ref(schema)}}}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


RENDER, AI, ADMIN, OPS = "render", "ai", "admin", "ops"
#: admin operations that inject faults into the stack itself: a fuzzer should leave them out
ADMIN_FAULTS = "admin-faults"

#: operation id -> (tag, summary, success status, success response, error statuses, openapi extra)
_OPS: dict[str, tuple[str, str, int, dict[str, Any], tuple[int, ...], dict[str, Any]]] = {
    "health": (OPS, "dependencies reachable?", 200, _ok("all dependencies reachable", "Health"), (), {}),
    "create_video": (RENDER, "submit a render job (charges RENDER_COST)", 202,
                     _ok("accepted", "Video", headers={"Location": {"schema": STR}}, links={
                         "GetVideo": _link("get_video", job_id="$response.body#/id"),
                         "CancelVideo": _link("cancel_video", job_id="$response.body#/id"),
                         "DownloadVideo": _link("download_video", job_id="$response.body#/id")}),
                     (400, 401, 402, 409, 429, 503), _body("VideoRequest")),
    "list_videos": (RENDER, "the caller's render jobs, newest first (keyset pagination)", 200,
                    _ok("one page", "VideoList"), (400, 401, 409, 429, 503),
                    {"parameters": [
                        _query("limit", {**INT, "minimum": 1, "maximum": 100, "default": 20}, "page size"),
                        _query("status", {"enum": list(JOB_STATUSES)}, "only jobs in this status"),
                        _query("cursor", STR, "next_cursor of the previous page")]}),
    "get_video": (RENDER, "one render job", 200, _ok("the job", "Video"), (401, 404, 409, 429, 503), {}),
    "cancel_video": (RENDER, "cancel a pending or running render job (refunded once)", 200,
                     _ok("cancelled", "Video"), (401, 404, 409, 429, 503), {}),
    "download_video": (RENDER, "the output of a completed render job, streamed through a remux", 200,
                       {"description": "the video", "content": {"video/mp4": {"schema": {"type": "string",
                                                                                       "format": "binary"}}}},
                       (401, 404, 409, 410, 429, 503), {}),
    "login": (AI, "log in with phone and password: an access token for the AI API", 200,
              _ok("logged in", "LoginEnvelope"), (400, 401, 409, 429, 503), _body("LoginRequest")),
    "create_ai_job": (AI, "submit an AI job (charges AI_COST)", 202,
                      _ok("accepted", "AiJobEnvelope", links={
                          "GetAiJob": _link("get_ai_job", job_id="$response.body#/data/job_id"),
                          "GetConversation": _link("get_conversation",
                                                   conversation_id="$response.body#/data/conversation_id")}),
                      (400, 401, 402, 404, 409, 429, 503), _body("AiJobRequest")),
    "get_ai_job": (AI, "one AI job", 200, _ok("the job", "AiJobEnvelope"), (401, 404, 409, 429, 503), {}),
    "list_models": (AI, "the provider's models now (A §3.2)", 200, _ok("models", "ModelsEnvelope"),
                    (401, 409, 429, 503), {}),
    "get_conversation": (AI, "a conversation's messages", 200, _ok("the conversation", "ConversationEnvelope"),
                         (401, 404, 409, 429, 503), {}),
    # ---- admin
    "create_user": (ADMIN, "a user with credits, an API key and a login", 201,
                    _ok("created", "CreatedUser", links={
                        "GetUser": _link("get_user", user_id="$response.body#/user_id"),
                        "NewKey": _link("new_key", user_id="$response.body#/user_id"),
                        "SetCredits": _link("set_credits", user_id="$response.body#/user_id"),
                        "IssueToken": _link("issue_token", user_id="$response.body#/user_id"),
                        "UserLedger": _link("user_ledger", user_id="$response.body#/user_id"),
                        "DeleteKey": _link("delete_key", key_id="$response.body#/key_id")}),
                    (400, 401, 403, 409, 503), _body("CreateUserRequest", required=False)),
    "get_user": (ADMIN, "a user, balance and keys", 200, _ok("the user", "User"), (401, 403, 404, 409, 503), {}),
    "new_key": (ADMIN, "a new API key (rotate=1 deletes the old ones)", 201, _ok("created", "NewKey"),
                (401, 403, 404, 409, 503),
                {"parameters": [_query("rotate", STR, "'1' or 'true' deletes the user's other keys")]}),
    "delete_key": (ADMIN, "soft-delete an API key", 200, _ok("deleted", "DeletedKey"), (401, 403, 404, 409, 503),
                   {}),
    "set_credits": (ADMIN, "set a balance (ledger row 'adjust')", 200, _ok("the new balance", "Balance"),
                    (400, 401, 403, 404, 409, 503), _body("SetCreditsRequest")),
    "issue_token": (ADMIN, "an AI API access token for a user", 201, _ok("issued", "IssuedToken"),
                    (400, 401, 403, 404, 409, 503), _body("IssueTokenRequest", required=False)),
    "user_ledger": (ADMIN, "a user's credit ledger", 200, _ok("entries", "Ledger"), (401, 403, 404, 409, 503), {}),
    "job_ledger": (ADMIN, "a job's credit ledger", 200, _ok("entries", "JobLedger"), (401, 403, 404, 409, 503), {}),
    "admin_job": (ADMIN, "a job's full record", 200, _ok("the job", "AdminJob"), (401, 403, 404, 409, 503), {}),
    "admin_jobs": (ADMIN, "jobs, newest first", 200, _ok("jobs", "AdminJobList"), (400, 401, 403, 404, 409, 503),
                   {"parameters": [
                       _query("status", {**STR, "pattern": f"^(({'|'.join(JOB_STATUSES)})(,({'|'.join(JOB_STATUSES)}))*)?$"},
                              "comma-separated statuses; empty: any"),
                       _query("kind", STR, "render or ai (anything else matches nothing)"),
                       _query("user_id", STR, "only this user's jobs (empty: any user; a malformed id is 404)"),
                       _query("limit", INT, "page size, clamped to [1, 1000]; default 100")]}),
    "admin_stats": (ADMIN, "job counts by kind and status", 200, _ok("counts", "Stats"), (401, 403, 409, 503), {}),
    "admin_workers": (ADMIN, "live worker heartbeats: which worker process is on which job", 200,
                      _ok("heartbeats", "Workers"), (401, 403, 503), {}),
    "publish_leak": (ADMIN_FAULTS, "publish tasks that leak memory in the worker (worker.memory_leak)", 202,
                     _ok("published", "LeakPublished"), (400, 401, 403, 503), _body("LeakRequest", required=False)),
    "leak_observations": (ADMIN, "what the leak tasks saw", 200, _ok("observations", "LeakObservations"),
                          (401, 403, 503), {}),
    "hold_connections": (ADMIN_FAULTS, "hold this API process's pooled connections (db.pool_exhausted)", 202,
                         _ok("holding", "HeldConnections"), (400, 401, 403),
                         _body("HoldConnectionsRequest", required=False)),
}


def doc(operation_id: str) -> dict[str, Any]:
    """Keyword arguments for the route decorator of ``operation_id``."""
    tag, summary, status, success, errors, extra = _OPS[operation_id]
    admin = tag in (ADMIN, ADMIN_FAULTS)
    ai = tag == AI
    envelope = "AiError" if ai else "RenderError"
    responses: dict[int | str, Any] = {status: copy.deepcopy(success)}
    for code in errors:
        responses[code] = _error(code, envelope)
        if admin and code == 401:
            responses[code].pop("headers", None)  # the admin 401 carries no WWW-Authenticate
    if operation_id == "health":
        responses[503] = _ok("a dependency is unreachable: failing names it", "Health")
    openapi_extra = copy.deepcopy(extra)
    if operation_id not in ("health", "login"):
        openapi_extra["security"] = [{"adminToken": []}] if admin else [{"apiKey": []}]
    elif operation_id == "login":
        openapi_extra["security"] = []
    return {"operation_id": operation_id, "tags": [tag], "summary": summary, "responses": responses,
            "openapi_extra": openapi_extra}


def metrics_doc() -> dict[str, Any]:
    return {"operation_id": "metrics", "tags": [OPS], "summary": "Prometheus text exposition",
            "responses": {200: {"description": "metrics (text/plain; version=0.0.4)",
                                "content": {"text/plain": {"schema": {"type": "string"}}}}}}


def install(app: FastAPI) -> None:
    """Serve the document above: components added, FastAPI's 422 (never answered) removed."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        spec = get_openapi(title=app.title, version=app.version, routes=app.routes,
                           description="The reference render platform (refstack): render API (R §二), AI API "
                                       "(A §1), admin API for the harness, health and metrics.")
        for item in spec.get("paths", {}).values():
            for op in item.values():
                op.get("responses", {}).pop("422", None)
                for param in op.get("parameters", []):
                    if param.get("in") == "path":
                        param["schema"] = {**UUID, "description": "a malformed id is a missing id: 404"}
        components = spec.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        schemas.update(copy.deepcopy(SCHEMAS))
        components["securitySchemes"] = copy.deepcopy(SECURITY_SCHEMES)
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
