"""A thin typed client for the Toxiproxy API (ours or the real 2.12 server).

Only documented endpoints are used, so it works unchanged against
``ghcr.io/shopify/toxiproxy``. Every error is a
:class:`renderchaos_proxy.errors.ToxiproxyError` (fields ``status``, ``url``;
subclasses ``NotFound``, ``Conflict``, ``Unreachable``...), httpx errors mapped at
this boundary with ``raise ... from exc``::

    client = ToxiproxyClient("http://127.0.0.1:8474")
    db = client.create_proxy("db", listen="127.0.0.1:0", upstream="127.0.0.1:5432")
    with db.toxic("latency", latency=200, jitter=20):
        ...                     # every chunk server -> client delayed 180..220 ms
    with db.down():
        ...                     # listener closed, connections cut
    # both faults are healed here, also when the block raised
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Iterator
from urllib.parse import quote

import httpx

from renderchaos_proxy.errors import HealError, NotFound, ToxiproxyError, Unreachable, error_for_status

DEFAULT_URL = "http://127.0.0.1:8474"
#: Timeouts of one API call (s): the API answers at once or is broken.
DEFAULT_TIMEOUT = httpx.Timeout(5.0, connect=2.0)


@dataclass
class Toxic:
    name: str
    type: str
    stream: str = "downstream"
    toxicity: float = 1.0
    attributes: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "Toxic":
        return cls(
            name=obj["name"],
            type=obj["type"],
            stream=obj.get("stream", "downstream"),
            toxicity=float(obj.get("toxicity", 1.0)),
            attributes=dict(obj.get("attributes") or {}),
        )


@dataclass
class Proxy:
    name: str
    listen: str
    upstream: str
    enabled: bool = True
    toxics: list[Toxic] = field(default_factory=list)
    client: "ToxiproxyClient | None" = field(default=None, repr=False, compare=False)

    @classmethod
    def from_json(cls, obj: dict[str, Any], client: "ToxiproxyClient | None" = None) -> "Proxy":
        return cls(
            name=obj["name"],
            listen=obj["listen"],
            upstream=obj["upstream"],
            enabled=bool(obj.get("enabled", True)),
            toxics=[Toxic.from_json(t) for t in obj.get("toxics") or []],
            client=client,
        )

    @property
    def listen_host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def listen_port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    def _api(self) -> "ToxiproxyClient":
        if self.client is None:
            raise ToxiproxyError(f"proxy {self.name!r} has no client; get it from ToxiproxyClient")
        return self.client

    def _path(self, suffix: str = "") -> str:
        return f"/proxies/{quote(self.name, safe='')}{suffix}"

    def _update_from(self, obj: dict[str, Any]) -> "Proxy":
        fresh = Proxy.from_json(obj, self.client)
        self.listen, self.upstream, self.enabled, self.toxics = fresh.listen, fresh.upstream, fresh.enabled, fresh.toxics
        return self

    # -- proxy state ------------------------------------------------------------
    def refresh(self) -> "Proxy":
        return self._update_from(self._api().request("GET", self._path()))

    def update(self, **fields: Any) -> "Proxy":
        """POST the given fields (``listen``, ``upstream``, ``enabled``)."""
        return self._update_from(self._api().request("POST", self._path(), json=fields))

    def disable(self) -> "Proxy":
        return self.update(enabled=False)

    def enable(self) -> "Proxy":
        return self.update(enabled=True)

    def delete(self) -> None:
        self._api().request("DELETE", self._path())

    # -- toxics -----------------------------------------------------------------
    def list_toxics(self) -> list[Toxic]:
        return [Toxic.from_json(t) for t in self._api().request("GET", self._path("/toxics"))]

    def add_toxic(
        self,
        type: str,
        stream: str = "downstream",
        toxicity: float = 1.0,
        name: str | None = None,
        **attributes: int,
    ) -> Toxic:
        body = {
            "name": name or f"{type}_{stream}",
            "type": type,
            "stream": stream,
            "toxicity": toxicity,
            "attributes": attributes,
        }
        return Toxic.from_json(self._api().request("POST", self._path("/toxics"), json=body))

    def update_toxic(self, name: str, toxicity: float | None = None, **attributes: int) -> Toxic:
        body: dict[str, Any] = {"attributes": attributes}
        if toxicity is not None:
            body["toxicity"] = toxicity
        return Toxic.from_json(self._api().request("POST", self._path(f"/toxics/{quote(name, safe='')}"), json=body))

    def remove_toxic(self, name: str) -> None:
        self._api().request("DELETE", self._path(f"/toxics/{quote(name, safe='')}"))

    # -- faults as context managers that always heal ----------------------------
    @contextlib.contextmanager
    def down(self) -> Iterator["Proxy"]:
        """The proxy is disabled inside the block and re-enabled on exit, whatever happens."""
        self.disable()
        try:
            yield self
        finally:
            try:
                self.enable()
            except ToxiproxyError as exc:
                raise HealError(
                    f"could not re-enable proxy {self.name!r} ({exc}); POST /reset on the proxy API",
                    status=exc.status,
                    url=exc.url,
                    proxy=self.name,
                ) from exc

    @contextlib.contextmanager
    def toxic(
        self,
        type: str,
        stream: str = "downstream",
        toxicity: float = 1.0,
        name: str | None = None,
        **attributes: int,
    ) -> Iterator[Toxic]:
        """Add a toxic for the block; remove it on exit, whatever happens."""
        toxic = self.add_toxic(type, stream=stream, toxicity=toxicity, name=name, **attributes)
        try:
            yield toxic
        finally:
            try:
                self.remove_toxic(toxic.name)
            except NotFound:
                pass  # already gone (a reset), so healed
            except ToxiproxyError as exc:
                raise HealError(
                    f"could not remove toxic {toxic.name!r} from proxy {self.name!r} ({exc}); "
                    "POST /reset on the proxy API",
                    status=exc.status,
                    url=exc.url,
                    proxy=self.name,
                    toxic=toxic.name,
                ) from exc


class ToxiproxyClient:
    """One Toxiproxy API endpoint. No global state: make one per server."""

    def __init__(self, base_url: str = DEFAULT_URL, timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport,
                                  headers={"User-Agent": "renderchaos-proxy-client"})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "ToxiproxyClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, json: Any = None) -> Any:
        url = self.base_url + path
        try:
            response = self._http.request(method, path, json=json)
        except httpx.HTTPError as exc:
            raise Unreachable(
                f"{method} {url} failed: {type(exc).__name__}: {exc}; is the proxy API running there?",
                status=None,
                url=url,
            ) from exc
        if response.status_code >= 400:
            message = response.text.strip()
            try:
                message = response.json().get("error", message)
            except ValueError:
                pass
            raise error_for_status(response.status_code)(
                f"{method} {url} answered {response.status_code}: {message}",
                status=response.status_code,
                url=url,
            )
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise ToxiproxyError(
                f"{method} {url} answered {response.status_code} with a body that is not JSON: "
                f"{response.text[:200]!r}",
                status=response.status_code,
                url=url,
            ) from exc

    # -- server-level calls -------------------------------------------------------
    def version(self) -> str:
        return self.request("GET", "/version")["version"]

    def proxies(self) -> dict[str, Proxy]:
        return {name: Proxy.from_json(obj, self) for name, obj in self.request("GET", "/proxies").items()}

    def get_proxy(self, name: str) -> Proxy:
        return Proxy.from_json(self.request("GET", f"/proxies/{quote(name, safe='')}"), self)

    def create_proxy(self, name: str, listen: str = "127.0.0.1:0", upstream: str = "", enabled: bool = True) -> Proxy:
        body = {"name": name, "listen": listen, "upstream": upstream, "enabled": enabled}
        return Proxy.from_json(self.request("POST", "/proxies", json=body), self)

    def populate(self, proxies: list[dict[str, Any] | Proxy]) -> list[Proxy]:
        body = [
            {"name": p.name, "listen": p.listen, "upstream": p.upstream, "enabled": p.enabled}
            if isinstance(p, Proxy)
            else p
            for p in proxies
        ]
        answer = self.request("POST", "/populate", json=body)["proxies"] or []  # null when empty
        return [Proxy.from_json(obj, self) for obj in answer]

    def reset(self) -> None:
        self.request("POST", "/reset")
