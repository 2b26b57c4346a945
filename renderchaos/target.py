"""What the suite runs against: the reference stack in containers, or an external deployment.

Scenarios see only a :class:`Target`: URLs, credentials and the capabilities the
harness may use. A scenario that needs a capability the target lacks is skipped
with that reason (reported as a skip, never as a pass).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import pytest

from renderchaos.config import KNOWN_CAPABILITIES, TargetFile

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
    def from_file(cls, tf: TargetFile) -> "Target":
        return cls(name=tf.name, kind="external", api_url=tf.api_url, admin_token=tf.admin_token,
                   capabilities=tf.capabilities, database_dsn=tf.database_dsn,
                   toxiproxy_url=tf.toxiproxy_url, live_url=tf.live_url,
                   provider_control_url=tf.provider_control_url,
                   metrics_url=tf.metrics_url or f"{tf.api_url}/metrics", routes=tf.routes)

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
