"""Network faults through the fault proxy (ours or a real Toxiproxy: same API).

The reference stack puts a proxy route in front of each dependency (``postgres``, ``redis``,
``rabbitmq``, ``provider``); an external target names its routes in the target file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from renderchaos.errors import FaultHealError, FaultInjectionError
from renderchaos_proxy.client import ToxiproxyClient
from renderchaos_proxy.errors import ToxiproxyError


def _client(url: str) -> ToxiproxyClient:
    return ToxiproxyClient(url, timeout=5.0)


@dataclass
class RouteDown:
    """The dependency is unreachable: listener closed, live connections cut (``enabled: false``)."""

    proxy_url: str
    route: str

    def describe(self) -> str:
        return f"partition: route {self.route} down"

    def inject(self) -> None:
        try:
            with _client(self.proxy_url) as c:
                c.get_proxy(self.route).disable()
        except ToxiproxyError as exc:
            raise FaultInjectionError(f"could not take route {self.route} down: {exc}",
                                      status=exc.status, url=exc.url) from exc

    def heal(self) -> None:
        try:
            with _client(self.proxy_url) as c:
                c.get_proxy(self.route).enable()
        except ToxiproxyError as exc:
            raise FaultHealError(f"could not bring route {self.route} back: {exc}",
                                 status=exc.status, url=exc.url) from exc


@dataclass
class RouteToxic:
    """A toxic on a route: latency, bandwidth, timeout, reset_peer, slicer, limit_data, slow_close."""

    proxy_url: str
    route: str
    type: str
    stream: str = "downstream"
    toxicity: float = 1.0
    attributes: dict[str, Any] = field(default_factory=dict)
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or f"renderchaos_{self.type}_{self.stream}"

    def describe(self) -> str:
        return f"toxic {self.type}/{self.stream} {self.attributes} on {self.route}"

    def inject(self) -> None:
        try:
            with _client(self.proxy_url) as c:
                c.get_proxy(self.route).add_toxic(type=self.type, stream=self.stream, toxicity=self.toxicity,
                                                   name=self.name, **self.attributes)
        except ToxiproxyError as exc:
            raise FaultInjectionError(f"could not add {self.describe()}: {exc}",
                                      status=exc.status, url=exc.url) from exc

    def heal(self) -> None:
        try:
            with _client(self.proxy_url) as c:
                proxy = c.get_proxy(self.route)
                if any(t.name == self.name for t in proxy.list_toxics()):
                    proxy.remove_toxic(self.name)
        except ToxiproxyError as exc:
            raise FaultHealError(f"could not remove {self.describe()}: {exc}",
                                 status=exc.status, url=exc.url) from exc
