"""The AI API (``/api/v1``, runbook A §1) as one user sees it, and AI jobs in the job ledger.

Envelopes: ``{"success": true, "data": ...}`` / ``{"success": false, "message", "error_code"}``.
The harness logs in with an admin-issued access token (``Admin.token(user_id)``), so no
password round-trip is needed. Every call is bounded by ``timeout``.
"""

from __future__ import annotations

from typing import Any

import httpx

from renderchaos.errors import TargetError
from renderchaos.platforms.refstack.client import UA, Admin

DEFAULT_MODEL = "refstack-echo"


class AiApi:
    """``Authorization: Bearer <access token>`` on every call."""

    def __init__(self, base_url: str, token: str, timeout: float = 10.0) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=httpx.Timeout(timeout), headers=dict(UA))
        self.http.headers["Authorization"] = f"Bearer {token}"

    @classmethod
    def for_user(cls, base_url: str, admin: Admin, user_id: str, timeout: float = 10.0) -> "AiApi":
        return cls(base_url, admin.token(user_id), timeout)

    def close(self) -> None:
        self.http.close()

    def submit(self, prompt: str, model: str = DEFAULT_MODEL, conversation_id: str | None = None) -> httpx.Response:
        body: dict[str, Any] = {"model": model, "prompt": prompt}
        if conversation_id:
            body["conversation_id"] = conversation_id
        return self.http.post("/api/v1/ai/jobs", json=body)

    def get(self, job_id: str) -> httpx.Response:
        return self.http.get(f"/api/v1/ai/jobs/{job_id}")

    def job(self, job_id: str) -> dict[str, Any]:
        resp = self.get(job_id)
        if resp.status_code != 200:
            raise TargetError(f"GET AI job {job_id}: HTTP {resp.status_code}: {resp.text[:300]}",
                              status=resp.status_code)
        return resp.json()["data"]

    def models(self) -> httpx.Response:
        return self.http.get("/api/v1/ai/models")

    def model_list(self) -> list[dict[str, Any]]:
        resp = self.models()
        if resp.status_code != 200:
            raise TargetError(f"GET /api/v1/ai/models: HTTP {resp.status_code}: {resp.text[:300]}",
                              status=resp.status_code)
        return resp.json()["data"]
