"""What the suite runs against: the reference stack in containers, or an external deployment.

Scenarios see only a :class:`Target`: URLs, credentials and the capabilities the
harness may use. A scenario that needs a capability the target lacks is skipped
with that reason (reported as a skip, never as a pass).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import pytest

import tomllib
from pathlib import Path

from renderchaos.config import KNOWN_CAPABILITIES, expand_env, ensure_loopback
from renderchaos.errors import ConfigError

if TYPE_CHECKING:
    from renderchaos.stack.stack import Stack


class MissingCapability(pytest.skip.Exception):  # type: ignore[name-defined,misc]
    """Raised by :meth:`Target.require`: a skip naming what the target lacks, never a pass."""


@dataclass
class Target:
    name: str
    kind: Literal["stack", "external"]
    api_url: str
    admin_token: str
    capabilities: frozenset[str]
    database_dsn: str | None = None
    toxiproxy_url: str | None = None
    live_url: str | None = None
    provider_control_url: str | None = None
    metrics_url: str | None = None
    routes: dict[str, str] = field(default_factory=dict)  # dependency -> fault-proxy route name
    stack: "Stack | None" = None

    def has(self, *caps: str) -> bool:
        return set(caps) <= self.capabilities

    def require(self, *caps: str) -> None:
        missing = sorted(set(caps) - self.capabilities)
        if missing:
            raise MissingCapability(f"target {self.name!r} ({self.kind}) lacks {missing}")

    @classmethod
    def from_stack(cls, stack: "Stack") -> "Target":
        caps = set(KNOWN_CAPABILITIES)
        if not stack.live:
            caps.discard("live")
        if not stack.provider:
            caps.discard("provider_control")
        return cls(name=f"reference stack {stack.ctx.stack_id}", kind="stack", api_url=stack.api_url,
                   admin_token=stack.admin_token, capabilities=frozenset(caps),
                   database_dsn=stack.postgres.dsn(), toxiproxy_url=stack.proxy_url,
                   live_url=stack.live.base_url() if stack.live else None,
                   provider_control_url=stack.provider.base_url() if stack.provider else None,
                   metrics_url=f"{stack.api_url}/metrics",
                   routes={name: r.name for name, r in stack.routes.items()}, stack=stack)


def load_target_file(path: Path, allow_remote: bool = False) -> "Target":
    """Read and validate a target file (TOML, see docs in README)."""
    where = str(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"target file {path} does not exist; pass --chaos-target PATH "
                          "(see examples/target.example.toml)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"target file {path} is not valid TOML: {exc}") from exc
    t = raw.get("target")
    if not isinstance(t, dict):
        raise ConfigError(f"{where}: missing [target] table")
    for key in ("name", "api_url", "admin_token"):
        if not isinstance(t.get(key), str) or not t[key]:
            raise ConfigError(f"{where}: [target] needs a string {key!r}")
    caps = t.get("capabilities", ["render_api"])
    if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
        raise ConfigError(f"{where}: capabilities must be a list of strings")
    unknown = set(caps) - KNOWN_CAPABILITIES
    if unknown:
        raise ConfigError(f"{where}: unknown capabilities {sorted(unknown)}; known: {sorted(KNOWN_CAPABILITIES)}")
    if "containers" in caps or "broken_variants" in caps:
        raise ConfigError(f"{where}: 'containers' and 'broken_variants' are only available on the "
                          "reference stack; remove them from an external target")
    urls = {k: expand_env(t[k], f"{where} [target].{k}") for k in
            ("api_url", "toxiproxy_url", "live_url", "provider_control_url", "metrics_url") if t.get(k)}
    for key, url in urls.items():
        ensure_loopback(url, f"{where} [target].{key}", allow_remote)
    dsn = expand_env(t["database_dsn"], f"{where} [target].database_dsn") if t.get("database_dsn") else None
    routes = raw.get("routes", {})
    if not isinstance(routes, dict):
        raise ConfigError(f"{where}: [routes] must map dependency names to Toxiproxy proxy names")
    return Target(name=t["name"], kind="external", api_url=urls["api_url"],
                  admin_token=expand_env(t["admin_token"], f"{where} [target].admin_token"),
                  capabilities=frozenset(caps), database_dsn=dsn,
                  toxiproxy_url=urls.get("toxiproxy_url"), live_url=urls.get("live_url"),
                  provider_control_url=urls.get("provider_control_url"),
                  metrics_url=urls.get("metrics_url") or f"{urls['api_url']}/metrics", routes=dict(routes))
