"""A tiny API with an honest OpenAPI document and switchable bugs, for the fuzz engine's tests.

``make_app(bugs)`` builds it; ``Served`` runs it with uvicorn on a free loopback port in a
thread. Each bug is one of the classic unchecked-input 500s (or a contract breach) that the
engine's explicit cases must find every time, whatever the seed.
"""

from __future__ import annotations

import json
import socket
import threading
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from renderchaos.wait import Poll, wait_for

BUGS = (
    "malformed_json_500",  # json.loads unguarded
    "missing_field_500",  # a required field read without a check
    "surrogate_500",  # name encoded to UTF-8 unguarded
    "long_name_500",  # name used as a file name unchecked (ENAMETOOLONG)
    "null_count_500",  # count: null reaches arithmetic
    "huge_count_500",  # count above 10**12 overflows
    "trace_in_400",  # a 400 body carrying a Python traceback
    "wrong_response_schema",  # GET's 404 body has a number where the schema says string
    "undocumented_status",  # GET answers 418
)

ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
ITEM_BODY = {
    "type": "object", "required": ["name"],
    "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 300},
                   "count": {"type": "integer", "minimum": 0, "maximum": 10**15}},
}
ITEM = {"type": "object", "required": ["id", "name"], "properties": {"id": {"type": "string"}, "name": {"type": "string"}}}


def _json(schema: dict) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def make_app(bugs: frozenset[str] = frozenset()) -> FastAPI:
    unknown = set(bugs) - set(BUGS)
    assert not unknown, unknown
    app = FastAPI(title="fuzz target", docs_url=None, redoc_url=None)

    @app.post("/items", status_code=201, operation_id="create_item",
              responses={201: {"description": "created", **_json(ITEM),
                               "links": {"GetItem": {"operationId": "get_item",
                                                     "parameters": {"item_id": "$response.body#/id"}}}},
                         400: {"description": "bad", **_json(ERROR)},
                         401: {"description": "no key", **_json(ERROR)}},
              openapi_extra={"requestBody": {"required": True, **_json(ITEM_BODY)},
                             "security": [{"key": []}]})
    async def create(request: Request):
        if request.headers.get("authorization") != "Bearer secret":
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        raw = await request.body()
        if "malformed_json_500" in bugs:
            data = json.loads(raw)
        else:
            try:
                data = json.loads(raw)
            except ValueError:
                if "trace_in_400" in bugs:
                    return JSONResponse({"error": 'Traceback (most recent call last):\n  File "app.py", line 1'},
                                        status_code=400)
                return JSONResponse({"error": "malformed JSON"}, status_code=400)
        if "missing_field_500" in bugs and isinstance(data, dict):
            data["name"]  # noqa: B018 - the bug: KeyError
        if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"]:
            return JSONResponse({"error": "name"}, status_code=400)
        name = data["name"]
        if "surrogate_500" in bugs:
            name.encode("utf-8")
        elif any(0xD800 <= ord(c) <= 0xDFFF for c in name):
            return JSONResponse({"error": "name: not Unicode"}, status_code=400)
        if len(name) > 255:
            if "long_name_500" in bugs:
                raise OSError(36, "File name too long")
            return JSONResponse({"error": "name too long"}, status_code=400)
        if "count" in data:
            count = data["count"]
            if count is None and "null_count_500" in bugs:
                count + 1  # noqa: B018 - the bug
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                return JSONResponse({"error": "count"}, status_code=400)
            if count > 10**12:
                if "huge_count_500" in bugs:
                    raise OverflowError("count")
                return JSONResponse({"error": "count too large"}, status_code=400)
        return JSONResponse({"id": "1", "name": name}, status_code=201)

    @app.get("/items/{item_id}", operation_id="get_item",
             responses={200: {"description": "the item", **_json(ITEM)},
                        404: {"description": "missing", **_json(ERROR)}})
    def get(item_id: str):
        if "undocumented_status" in bugs:
            return JSONResponse({"error": "teapot"}, status_code=418)
        if item_id != "1":
            return JSONResponse({"error": 404 if "wrong_response_schema" in bugs else "not found"}, status_code=404)
        return {"id": "1", "name": "one"}

    def openapi() -> dict[str, Any]:
        from fastapi.openapi.utils import get_openapi

        spec = get_openapi(title=app.title, version="1", routes=app.routes)
        for item in spec["paths"].values():
            for op in item.values():
                op["responses"].pop("422", None)
        spec.setdefault("components", {}).pop("schemas", None)
        spec["components"]["securitySchemes"] = {"key": {"type": "http", "scheme": "bearer"}}
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """``with Served(app) as url:`` the app on http://127.0.0.1:<port>, stopped on exit."""

    def __init__(self, app: FastAPI) -> None:
        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="critical",
                                                    lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, name="fuzz-target", daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        wait_for(lambda: self.server.started, "the fuzz target app to listen", 10.0, Poll(0.02))
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
