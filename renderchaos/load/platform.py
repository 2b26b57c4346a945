"""Which platform a Locust process drives: :class:`PlatformSpec`, passed as JSON in the environment.

Locust runs in its own processes (gevent and pytest do not share one), so the adapter object of
the test cannot be handed over: the runner passes what builds an equal one, the adapter (its
registered name, or ``package.module:Class``) and the :class:`~renderchaos.platforms.base.PlatformEndpoint`
fields, as JSON in ``RENDERCHAOS_PLATFORM`` (the environment, not argv: it carries the admin
token). Every Locust user then builds its own adapter from it.

No Locust import here: the runner and the tests use this module in the pytest process.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from renderchaos.errors import ConfigError

if TYPE_CHECKING:
    from renderchaos.platforms.base import Platform, PlatformEndpoint

ENV = "RENDERCHAOS_PLATFORM"
_FIELDS = ("adapter", "api_url", "admin_token", "urls", "host_dirs", "settings", "timeout")


def adapter_name(cls: type) -> str:
    """What names ``cls`` in another process: its entry-point name when registered under
    ``renderchaos.platforms``, else ``module:Class``."""
    from importlib.metadata import entry_points

    from renderchaos.platforms import GROUP

    for ep in entry_points(group=GROUP):
        try:
            if ep.load() is cls:
                return ep.name
        except Exception:  # noqa: BLE001 - another adapter that does not import here is not ours
            continue
    return f"{cls.__module__}:{cls.__qualname__}"


@dataclass(frozen=True)
class PlatformSpec:
    adapter: str  # registered name ("refstack") or "package.module:Class"
    api_url: str
    admin_token: str | None = None
    urls: Mapping[str, str] = field(default_factory=dict)
    host_dirs: Mapping[str, str] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)
    timeout: float = 10.0  # every adapter call is bounded by it

    @classmethod
    def of(cls, platform: "Platform") -> "PlatformSpec":
        """The spec that builds an adapter equal to ``platform`` (same class, same endpoint)."""
        e = platform.endpoint
        return cls(adapter=adapter_name(type(platform)), api_url=e.api_url, admin_token=e.admin_token,
                   urls=dict(e.urls), host_dirs={k: str(v) for k, v in e.host_dirs.items()},
                   settings=dict(e.settings), timeout=float(platform.timeout))

    def endpoint(self) -> "PlatformEndpoint":
        from renderchaos.platforms.base import PlatformEndpoint

        return PlatformEndpoint(api_url=self.api_url, admin_token=self.admin_token, urls=dict(self.urls),
                                host_dirs={k: Path(v) for k, v in self.host_dirs.items()},
                                settings=dict(self.settings))

    def platform_class(self) -> "type[Platform]":
        from renderchaos.platforms import platform_class

        return platform_class(self.adapter, where=f"{ENV} adapter")

    def build(self) -> "Platform":
        """A new adapter for this endpoint (the caller closes it)."""
        return self.platform_class()(self.endpoint(), timeout=self.timeout)

    def describe(self) -> str:
        """For logs: adapter and URL, never the token."""
        return f"{self.adapter} at {self.api_url}"

    # -- JSON -------------------------------------------------------------------------------
    def to_json(self) -> str:
        data = {k: getattr(self, k) for k in _FIELDS}
        data.update(urls=dict(self.urls), host_dirs=dict(self.host_dirs), settings=dict(self.settings))
        try:
            return json.dumps(data, sort_keys=True)
        except TypeError as exc:
            raise ConfigError(f"the platform's settings cannot be passed to the Locust process as JSON: {exc}; "
                              "give the adapter settings as strings, numbers, lists or tables") from exc

    @classmethod
    def from_json(cls, raw: str, where: str = ENV) -> "PlatformSpec":
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ConfigError(f"{where} is not JSON ({exc}); expected {{\"adapter\": ..., \"api_url\": ...}} "
                              "as written by renderchaos.load.runner") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - set(_FIELDS))
        if unknown:
            raise ConfigError(f"{where}: unknown keys {unknown}; known: {list(_FIELDS)}")
        for key in ("adapter", "api_url"):
            if not isinstance(data.get(key), str) or not data[key]:
                raise ConfigError(f"{where}: needs a string {key!r} (the adapter name or module:Class, the API URL)")
        try:
            return cls(adapter=data["adapter"], api_url=data["api_url"], admin_token=data.get("admin_token"),
                       urls=dict(data.get("urls") or {}), host_dirs=dict(data.get("host_dirs") or {}),
                       settings=dict(data.get("settings") or {}), timeout=float(data.get("timeout", 10.0)))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: urls, host_dirs and settings are objects, timeout a number: {exc}") from exc
