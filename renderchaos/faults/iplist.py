"""Encoder IP access lists of the live service (AVideo runbook V), through its admin API.

The live service is found at the target's ``live`` URL (``platform.endpoint.urls["live"]``,
:func:`live_url`). ``Blocklisted.of(target, ip)`` puts an address or CIDR range on the blocklist (the runbook's
fault: an encoder IP put on the blacklist); healed by removing that entry. ``Allowlisted`` puts
it on the allowlist (the runbook's remedy; as a fault object so a scenario's allowlist entry is
removed at the end and does not leak into the next scenario). Both heal idempotently; the
service's answer to the injection is kept in ``answer`` (e.g. ``cut``,
``not_blocked_because_allowlisted``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import httpx

from renderchaos.errors import FaultHealError, FaultInjectionError

if TYPE_CHECKING:
    from renderchaos.target import Target

ADMIN_TIMEOUT_S = 5.0
LIVE_URL = "live"  # the platform endpoint's name for the live service's admin API
E = TypeVar("E", bound="_ListEntry")


def live_url(target: "Target") -> str:
    """The live service's admin API of ``target``; a skip naming what is missing if it has none."""
    from renderchaos.target import MissingCapability

    target.require(LIVE_URL)
    url = target.platform.endpoint.urls.get(LIVE_URL)
    if not url:
        raise MissingCapability(f"target {target.name!r} names no live service URL (platform endpoint "
                                f"urls[{LIVE_URL!r}])")
    return url


@dataclass
class _ListEntry:
    live_url: str
    ip: str
    kind: str = ""
    answer: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls: type[E], target: "Target", ip: str) -> E:
        """``ip`` (an address or CIDR range) on ``target``'s live service list."""
        return cls(live_url(target), ip)

    def describe(self) -> str:
        return f"{self.ip} on the live {self.kind}"

    def inject(self) -> None:
        try:
            resp = httpx.post(f"{self.live_url}/{self.kind}", json={"ip": self.ip}, timeout=ADMIN_TIMEOUT_S)
        except httpx.HTTPError as exc:
            raise FaultInjectionError(f"could not put {self.describe()}: {exc}") from exc
        if resp.status_code != 200:
            raise FaultInjectionError(f"could not put {self.describe()}: {resp.status_code} {resp.text[:300]}")
        self.answer = resp.json()

    def heal(self) -> None:
        try:
            entries = httpx.get(f"{self.live_url}/{self.kind}", timeout=ADMIN_TIMEOUT_S).json()[self.kind]
            net = next((e for e in entries if e == self.ip or e.split("/")[0] == self.ip), None)
            if net is None:
                return
            resp = httpx.delete(f"{self.live_url}/{self.kind}/{quote(net, safe='/')}", timeout=ADMIN_TIMEOUT_S)
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            raise FaultHealError(f"could not take {self.describe()} off: {exc}") from exc
        if resp.status_code not in (200, 404):
            raise FaultHealError(f"could not take {self.describe()} off: {resp.status_code} {resp.text[:300]}")


@dataclass
class Blocklisted(_ListEntry):
    kind: str = "blocklist"


@dataclass
class Allowlisted(_ListEntry):
    kind: str = "allowlist"
