"""Extra fault-proxy routes a scenario adds for itself (the target's routes are fixed at start).

``ExtraRoute`` puts a route of the target's fault proxy in front of any loopback address, e.g. the
platform's API (which is not behind the proxy: the proxy's routes front its dependencies), so a
toxic can sit on that path. ``ExtraRoute.in_front_of(target, url, label)`` builds one for a URL of
the target (``target.platform.endpoint.api_url``, say). It is a
:class:`~renderchaos.faults.base.Fault`: ``inject()`` creates the route, ``heal()`` deletes it
(idempotent), so ``run.inject(ExtraRoute(...))`` removes it whatever happens.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from renderchaos.errors import ConfigError, FaultHealError, FaultInjectionError
from renderchaos_proxy.client import ToxiproxyClient
from renderchaos_proxy.errors import ToxiproxyError

if TYPE_CHECKING:
    from renderchaos.target import Target

PROXY_API_TIMEOUT_S = 5.0


@dataclass
class ExtraRoute:
    proxy_url: str
    name: str
    upstream_port: int
    listen_port: int | None = None  # known once injected (the proxy binds port 0)
    upstream_host: str | None = None  # default: the stack's address (self.host)

    @classmethod
    def in_front_of(cls, target: "Target", url: str, label: str) -> "ExtraRoute":
        """A route of ``target``'s fault proxy to the host and port of ``url``, named after
        ``label`` and unique (a shared Toxiproxy may serve several runs)."""
        target.require("fault_proxy")
        u = urlsplit(url)
        if not u.hostname:
            raise ConfigError(f"cannot put a proxy route in front of {url!r}: no host in that URL")
        port = u.port or (443 if u.scheme == "https" else 80)
        return cls(target.proxy_url or "", f"rc-{label}-{uuid.uuid4().hex[:8]}", port, upstream_host=u.hostname)

    @property
    def upstream(self) -> str:
        host = self.upstream_host or self.host
        host = f"[{host}]" if ":" in host else host
        return f"{host}:{self.upstream_port}"

    @property
    def host(self) -> str:
        """The stack's address: the proxy shares its host network with the upstream."""
        return urlsplit(self.proxy_url).hostname or "127.0.0.1"

    def describe(self) -> str:
        return f"proxy route {self.name} -> {self.upstream}"

    def inject(self) -> None:
        try:
            with ToxiproxyClient(self.proxy_url, timeout=PROXY_API_TIMEOUT_S) as c:
                proxy = c.create_proxy(self.name, f"{self.host}:0", self.upstream)
                self.listen_port = proxy.listen_port
        except ToxiproxyError as exc:
            raise FaultInjectionError(f"could not create {self.describe()}: {exc}",
                                      status=exc.status, url=exc.url) from exc
        if not self.listen_port:
            raise FaultInjectionError(f"{self.describe()}: the proxy reported no listen port")

    def heal(self) -> None:
        try:
            with ToxiproxyClient(self.proxy_url, timeout=PROXY_API_TIMEOUT_S) as c:
                if self.name in c.proxies():
                    c.get_proxy(self.name).delete()
        except ToxiproxyError as exc:
            raise FaultHealError(f"could not delete {self.describe()}: {exc}",
                                 status=exc.status, url=exc.url) from exc
