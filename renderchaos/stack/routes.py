"""Extra fault-proxy routes a scenario adds for itself (the stack's routes are fixed at start).

``ExtraRoute`` puts a route of the stack's fault proxy in front of any loopback port, e.g. the
API (which is not behind the proxy by default), so a toxic can sit on that path. It is a
:class:`~renderchaos.faults.base.Fault`: ``inject()`` creates the route, ``heal()`` deletes it
(idempotent), so ``run.inject(ExtraRoute(...))`` removes it whatever happens.
"""

from __future__ import annotations

from dataclasses import dataclass

from renderchaos.errors import FaultHealError, FaultInjectionError
from renderchaos_proxy.client import ToxiproxyClient
from renderchaos_proxy.errors import ToxiproxyError

PROXY_API_TIMEOUT_S = 5.0


@dataclass
class ExtraRoute:
    proxy_url: str
    name: str
    upstream_port: int
    listen_port: int | None = None  # known once injected (the proxy binds port 0)

    def describe(self) -> str:
        return f"proxy route {self.name} -> 127.0.0.1:{self.upstream_port}"

    def inject(self) -> None:
        try:
            with ToxiproxyClient(self.proxy_url, timeout=PROXY_API_TIMEOUT_S) as c:
                proxy = c.create_proxy(self.name, "127.0.0.1:0", f"127.0.0.1:{self.upstream_port}")
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
