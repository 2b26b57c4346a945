"""Error envelopes of the two APIs and the one exception the handlers raise.

Render API (R §二)::

    {"error": {"code": "invalid_parameter", "message": "...", "field": "template_id", "retry_after": 3}}

AI API (A §1)::

    {"success": false, "message": "...", "error_code": "VALIDATION_ERROR", "field": "model"}

Handlers raise :class:`ApiError` with the render-style code; :func:`render_body`
or :func:`ai_body` shapes it by the API the request went to. A 500 never
carries a traceback (unless the ``api_stack_trace_in_body`` bug is planted).
"""

from __future__ import annotations

import math
from typing import Any

#: render-API code -> AI-API error_code (A §1.1 - §1.4)
AI_CODES = {
    "unauthorized": "UNAUTHORIZED",
    "not_found": "NOT_FOUND",
    "invalid_parameter": "VALIDATION_ERROR",
    "insufficient_credits": "INSUFFICIENT_CREDITS",
    "rate_limit_exceeded": "RATE_LIMITED",
    "conflict": "CONFLICT",
    "forbidden": "FORBIDDEN",
    "method_not_allowed": "METHOD_NOT_ALLOWED",
    "internal_error": "INTERNAL_ERROR",
}


class ApiError(Exception):
    """An answer other than success: status, stable code, human message, optional field."""

    def __init__(self, status: int, code: str, message: str, *, field: str | None = None,
                 retry_after: float | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.retry_after = None if retry_after is None else max(1, math.ceil(retry_after))
        self.headers = dict(headers or {})
        if self.retry_after is not None:
            self.headers.setdefault("Retry-After", str(self.retry_after))

    def __reduce__(self):
        return (_rebuild, (self.status, self.code, self.message, self.field, self.retry_after, self.headers))


def _rebuild(status, code, message, field, retry_after, headers) -> ApiError:
    return ApiError(status, code, message, field=field, retry_after=retry_after, headers=headers)


def invalid(field: str, message: str) -> ApiError:
    return ApiError(400, "invalid_parameter", message, field=field)


def not_found(what: str = "job") -> ApiError:
    # identical for "missing" and "someone else's" (no existence leak, SCENARIOS api.not_found)
    return ApiError(404, "not_found", f"{what} not found")


def unavailable(code: str, message: str, retry_after: float = 1) -> ApiError:
    return ApiError(503, code, message, retry_after=retry_after)


def render_body(err: ApiError) -> dict[str, Any]:
    body: dict[str, Any] = {"code": err.code, "message": err.message}
    if err.field is not None:
        body["field"] = err.field
    if err.retry_after is not None:
        body["retry_after"] = err.retry_after
    return {"error": body}


def ai_body(err: ApiError) -> dict[str, Any]:
    body: dict[str, Any] = {"success": False, "message": err.message,
                            "error_code": AI_CODES.get(err.code, err.code.upper())}
    if err.field is not None:
        body["field"] = err.field
    if err.retry_after is not None:
        body["retry_after"] = err.retry_after
    return body


def is_ai_path(path: str) -> bool:
    return path.startswith("/api/")


def body_for(path: str, err: ApiError) -> dict[str, Any]:
    return ai_body(err) if is_ai_path(path) else render_body(err)
