"""The external AI provider, played by a small FastAPI service (runbook A §3).

Public API (OpenAI-like, ``Authorization: Bearer <key>`` on every /v1 call)::

    GET  /v1/models                   {"object": "list", "data": [{"id", "available"}], "unavailable": [...]}
    POST /v1/generate                 {"model", "prompt"} -> {"id", "model", "output", "usage"}
    POST /v1/chat/completions         {"model", "messages": [...]} -> same behaviour, chat-shaped answer
    GET  /health                      {"status": "ok"}  (no auth)

Control API for the harness (no auth, loopback only)::

    POST /_control        partial update of :class:`Behaviour`, plus a ``mode`` shorthand
    GET  /_control        current behaviour
    GET  /_control/stats  calls per key and per outcome, and the recent call log
    POST /_control/reset  normal behaviour, stats cleared

Fault precedence for a /v1 call: missing/unknown key (401) > ``unauthorized`` (401) >
``rate_limited_keys`` (429 + Retry-After) > ``delay_s`` (slow, then carry on) >
``error`` (500) > unavailable/unknown model (404) > success.

Environment: ``PROVIDER_HOST`` (127.0.0.1), ``PROVIDER_PORT`` (8090),
``PROVIDER_VALID_KEYS`` (comma list, default ``test-key-1,test-key-2,test-key-3``),
``PROVIDER_MODELS`` (comma list).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter, defaultdict, deque
from dataclasses import asdict, dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

DEFAULT_MODELS = ("gpt-4o-mini", "claude-3-haiku", "refstack-echo")
DEFAULT_KEYS = ("test-key-1", "test-key-2", "test-key-3")
CALL_LOG_SIZE = 2000

#: ``mode`` shorthands accepted by POST /_control.
MODES = ("normal", "unauthorized", "rate_limit", "slow", "error", "model_unavailable")


@dataclass
class Behaviour:
    """What the provider does to the next /v1 calls. Every field is independent."""

    unauthorized: bool = False  # every key answers 401 "Invalid API Key"
    invalid_keys: list[str] = field(default_factory=list)  # these keys answer 401
    unavailable_models: list[str] = field(default_factory=list)  # 404 + flagged in /v1/models
    rate_limited_keys: list[str] = field(default_factory=list)  # 429; ["*"] means every key
    retry_after_s: float = 1.0  # Retry-After sent with a 429
    delay_s: float = 0.0  # slow provider: wait this long before answering
    error: bool = False  # 500 on every generate
    error_status: int = 500


@dataclass
class Stats:
    calls_total: int = 0
    by_key: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    by_outcome: Counter = field(default_factory=Counter)
    calls: deque = field(default_factory=lambda: deque(maxlen=CALL_LOG_SIZE))

    def record(self, key: str, path: str, model: str | None, outcome: str, status: int, t0: float) -> None:
        self.calls_total += 1
        self.by_key[key][outcome] += 1
        self.by_outcome[outcome] += 1
        self.calls.append(
            {"t": t0, "done": time.time(), "key": key, "path": path, "model": model,
             "outcome": outcome, "status": status}
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls_total": self.calls_total,
            "by_key": {k: dict(v) for k, v in self.by_key.items()},
            "by_outcome": dict(self.by_outcome),
            "calls": list(self.calls),
        }


def _csv(value: str | None, default: tuple[str, ...]) -> list[str]:
    items = [v.strip() for v in (value or "").split(",") if v.strip()]
    return items or list(default)


def _error(status: int, message: str, code: str, headers: dict[str, str] | None = None) -> JSONResponse:
    # Shape of the common provider error body; ``message`` is what the runbook greps for.
    return JSONResponse(
        {"error": {"message": message, "type": code, "code": code}}, status_code=status, headers=headers
    )


def create_app(valid_keys: list[str] | None = None, models: list[str] | None = None) -> FastAPI:
    """Build the app. No globals: state lives on ``app.state``."""
    app = FastAPI(title="refstack AI provider")
    app.state.valid_keys = set(valid_keys or _csv(os.environ.get("PROVIDER_VALID_KEYS"), DEFAULT_KEYS))
    app.state.models = list(models or _csv(os.environ.get("PROVIDER_MODELS"), DEFAULT_MODELS))
    app.state.behaviour = Behaviour()
    app.state.stats = Stats()

    def bearer(request: Request) -> str:
        auth = request.headers.get("authorization", "")
        return auth[7:].strip() if auth.lower().startswith("bearer ") else ""

    def check_key(key: str) -> JSONResponse | None:
        b: Behaviour = app.state.behaviour
        if not key or key not in app.state.valid_keys or key in b.invalid_keys or b.unauthorized:
            return _error(401, "Invalid API Key", "invalid_api_key")
        return None

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def list_models(request: Request) -> JSONResponse:
        t0 = time.time()
        key = bearer(request)
        denied = check_key(key)
        if denied is not None:
            app.state.stats.record(key or "<none>", "/v1/models", None, "unauthorized", 401, t0)
            return denied
        unavailable = set(app.state.behaviour.unavailable_models)
        app.state.stats.record(key, "/v1/models", None, "ok", 200, t0)
        return JSONResponse(
            {
                "object": "list",
                # Unavailable models stay listed but flagged, and are named in "unavailable".
                "data": [
                    {"id": m, "object": "model", "available": m not in unavailable}
                    for m in app.state.models
                ],
                "unavailable": sorted(unavailable),
            }
        )

    async def generate(request: Request, path: str, chat: bool) -> JSONResponse:
        t0 = time.time()
        key = bearer(request)
        b: Behaviour = app.state.behaviour
        stats: Stats = app.state.stats
        try:
            body = await request.json()
        except ValueError:
            body = {}
        model = body.get("model") if isinstance(body, dict) else None

        denied = check_key(key)
        if denied is not None:
            stats.record(key or "<none>", path, model, "unauthorized", 401, t0)
            return denied
        if "*" in b.rate_limited_keys or key in b.rate_limited_keys:
            stats.record(key, path, model, "rate_limited", 429, t0)
            return _error(
                429, "Rate limit exceeded", "rate_limit_exceeded",
                headers={"Retry-After": f"{b.retry_after_s:g}"},
            )
        if b.delay_s > 0:
            await asyncio.sleep(b.delay_s)
        if b.error:
            stats.record(key, path, model, "error", b.error_status, t0)
            return _error(b.error_status, "Internal provider error", "server_error")
        if not model or model not in app.state.models or model in b.unavailable_models:
            stats.record(key, path, model, "model_not_found", 404, t0)
            return _error(404, "Model not found or not available", "model_not_found")

        if chat:
            messages = body.get("messages") or []
            prompt = str(messages[-1].get("content", "")) if messages else ""
        else:
            prompt = str(body.get("prompt", ""))
        output = f"[{model}] {prompt[::-1]}"  # deterministic, so tests can check the answer
        stats.record(key, path, model, "ok", 200, t0)
        answer: dict[str, Any] = {
            "id": f"gen-{uuid.uuid4().hex[:12]}",
            "model": model,
            "output": output,
            "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": len(output.split())},
        }
        if chat:
            answer["object"] = "chat.completion"
            answer["choices"] = [
                {"index": 0, "message": {"role": "assistant", "content": output}, "finish_reason": "stop"}
            ]
        return JSONResponse(answer)

    @app.post("/v1/generate")
    async def generate_plain(request: Request) -> JSONResponse:
        return await generate(request, "/v1/generate", chat=False)

    @app.post("/v1/chat/completions")
    async def generate_chat(request: Request) -> JSONResponse:
        return await generate(request, "/v1/chat/completions", chat=True)

    # ---- control API (harness only) -------------------------------------------------
    @app.get("/_control")
    async def get_control() -> dict[str, Any]:
        return asdict(app.state.behaviour)

    @app.post("/_control")
    async def set_control(request: Request) -> JSONResponse:
        try:
            payload = await request.json()
        except ValueError:
            return JSONResponse({"detail": "body must be a JSON object"}, status_code=400)
        if not isinstance(payload, dict):
            return JSONResponse({"detail": "body must be a JSON object"}, status_code=400)
        b: Behaviour = app.state.behaviour
        mode = payload.pop("mode", None)
        if mode is not None:
            if mode not in MODES:
                return JSONResponse({"detail": f"unknown mode {mode!r}; known: {list(MODES)}"}, status_code=400)
            if mode == "normal":
                b = app.state.behaviour = Behaviour()
            elif mode == "unauthorized":
                b.unauthorized = True
            elif mode == "rate_limit":
                b.rate_limited_keys = list(payload.pop("keys", None) or ["*"])
            elif mode == "slow":
                b.delay_s = float(payload.pop("delay_s", 5.0))
            elif mode == "error":
                b.error = True
            elif mode == "model_unavailable":
                b.unavailable_models = list(payload.pop("models", None) or [payload.pop("model")])
        known = set(asdict(b))
        unknown = set(payload) - known
        if unknown:
            return JSONResponse(
                {"detail": f"unknown control field(s) {sorted(unknown)}; known: {sorted(known)} and 'mode'"},
                status_code=400,
            )
        for name, value in payload.items():
            setattr(b, name, value)
        return JSONResponse(asdict(b))

    @app.get("/_control/stats")
    async def get_stats() -> dict[str, Any]:
        return app.state.stats.as_dict()

    @app.post("/_control/reset")
    async def reset() -> dict[str, Any]:
        app.state.behaviour = Behaviour()
        app.state.stats = Stats()
        return asdict(app.state.behaviour)

    return app
