"""HTTP clients of the reference stack: render API (``/v1``), AI API (``/api/v1``), admin.

Only the reference stack's adapter (:mod:`renderchaos.platforms.refstack`) uses them.

Thin on purpose: methods return the raw ``httpx.Response`` so scenarios can assert on status,
headers and envelopes; ``*_ok`` helpers raise :class:`TargetError` with the body when the target
answers something unusable. Every call has a bounded timeout (the profile's ``connect``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from renderchaos.errors import TargetError

UA = {"User-Agent": "renderchaos"}


def _client(base_url: str, timeout: float, transport: httpx.BaseTransport | None = None) -> httpx.Client:
    return httpx.Client(base_url=base_url, timeout=httpx.Timeout(timeout), headers=UA, transport=transport)


def _ok(resp: httpx.Response, what: str, expect: tuple[int, ...] = (200, 201, 202)) -> dict[str, Any]:
    if resp.status_code not in expect:
        raise TargetError(f"{what}: expected HTTP {'/'.join(map(str, expect))}, got {resp.status_code}: "
                          f"{resp.text[:400]}", status=resp.status_code)
    try:
        return resp.json()
    except ValueError as exc:
        raise TargetError(f"{what}: answer is not JSON: {resp.text[:200]!r}") from exc


@dataclass(frozen=True)
class User:
    user_id: str
    key_id: str
    api_key: str
    phone: str | None
    password: str | None
    credits: int


class Admin:
    """The harness's admin access (users, keys, credits, job and ledger views)."""

    def __init__(self, base_url: str, token: str, timeout: float = 10.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.http = _client(base_url, timeout, transport)
        self.http.headers["Authorization"] = f"Bearer {token}"

    def close(self) -> None:
        self.http.close()

    def create_user(self, credits: int = 1000, name: str = "renderchaos") -> User:
        d = _ok(self.http.post("/admin/users", json={"credits": credits, "name": name}), "create user", (201,))
        return User(d["user_id"], d["key_id"], d["api_key"], d.get("phone"), d.get("password"), d["credits"])

    def user(self, user_id: str) -> dict[str, Any]:
        return _ok(self.http.get(f"/admin/users/{user_id}"), "read user")

    def new_key(self, user_id: str, rotate: bool = False) -> dict[str, Any]:
        return _ok(self.http.post(f"/admin/users/{user_id}/keys", params={"rotate": "1" if rotate else "0"}),
                   "new key", (201,))

    def delete_key(self, key_id: str) -> None:
        _ok(self.http.delete(f"/admin/keys/{key_id}"), "delete key")

    def set_credits(self, user_id: str, credits: int) -> None:
        _ok(self.http.put(f"/admin/users/{user_id}/credits", json={"credits": credits}), "set credits")

    def token(self, user_id: str, expired: bool = False) -> str:
        d = _ok(self.http.post(f"/admin/users/{user_id}/tokens", json={"expired": expired}), "issue token", (201,))
        return d.get("access_token") or d["token"]

    def job(self, job_id: str) -> dict[str, Any] | None:
        r = self.http.get(f"/admin/jobs/{job_id}")
        if r.status_code == 404:
            return None
        return _ok(r, f"read job {job_id}")

    def jobs(self, **filters: str) -> list[dict[str, Any]]:
        return _ok(self.http.get("/admin/jobs", params=filters), "list jobs")["data"]

    def user_ledger(self, user_id: str) -> dict[str, Any]:
        return _ok(self.http.get(f"/admin/users/{user_id}/ledger"), f"ledger of user {user_id}")

    def stats(self) -> dict[str, Any]:
        return _ok(self.http.get("/admin/stats"), "job stats")

    def leak(self, count: int, mb: int) -> httpx.Response:
        """Publish leak tasks (reference stack, worker.memory_leak); the raw answer."""
        return self.http.post("/admin/leak", json={"count": count, "mb": mb})

    def leak_observations(self) -> list[dict[str, Any]]:
        return _ok(self.http.get("/admin/leak"), "leak observations")["observations"]

    def job_ledger(self, job_id: str) -> dict[str, Any]:
        return _ok(self.http.get(f"/admin/jobs/{job_id}/ledger"), f"ledger of job {job_id}")


class RenderApi:
    """The render API as one user sees it (``Authorization: Bearer <api key>``)."""

    def __init__(self, base_url: str, api_key: str | None, timeout: float = 10.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.http = _client(base_url, timeout, transport)
        if api_key is not None:
            self.http.headers["Authorization"] = f"Bearer {api_key}"

    def close(self) -> None:
        self.http.close()

    def submit(self, body: dict[str, Any] | None = None, **kw: Any) -> httpx.Response:
        return self.http.post("/v1/videos", json=body, **kw)

    def get(self, job_id: str) -> httpx.Response:
        return self.http.get(f"/v1/videos/{job_id}")

    def cancel(self, job_id: str) -> httpx.Response:
        return self.http.delete(f"/v1/videos/{job_id}")

    def download(self, job_id: str, timeout: float = 60.0) -> httpx.Response:
        return self.http.get(f"/v1/videos/{job_id}/download", timeout=timeout)

    def health(self) -> httpx.Response:
        return self.http.get("/health")


def render_body(title: str = "renderchaos", duration: float = 2.0, width: int = 320, height: int = 240,
                **extra: Any) -> dict[str, Any]:
    """A small valid render request (template fields per the render manual R §二.3)."""
    data = {"title": title, "duration": duration, "width": width, "height": height,
            "colours": ["#112233", "white"], "price": 99}
    body: dict[str, Any] = {"template_id": "template_abc123", "data": data}
    body.update(extra)
    return body
