"""AI provider faults through its control API (refstack/provider/server.py).

``POST /_control`` switches what the provider answers (401, 429 on some keys, slow, 500,
model unavailable); ``GET /_control/stats`` counts calls per key and outcome;
``POST /_control/reset`` restores normal behaviour and clears the stats. The harness reaches
the provider directly, at the control URL the target's platform endpoint names
(``urls["provider_control"]``, capability ``provider_control``), never through the fault proxy.

:class:`ProviderBehaviour` is a :class:`~renderchaos.faults.base.Fault`: injected with
``ScenarioRun.inject()`` it is reset on the way out whatever happens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from renderchaos.errors import FaultHealError, FaultInjectionError, TargetError

if TYPE_CHECKING:
    from renderchaos.target import Target

CONTROL_TIMEOUT = 5.0  # s, one control call
CONTROL_URL = "provider_control"  # the platform endpoint's name for the provider's control API


def control_url(target: "Target") -> str:
    """Where ``target``'s AI provider takes control calls; a skip naming the capability if it has none."""
    target.require(CONTROL_URL)
    return target.platform.endpoint.urls[CONTROL_URL]


@dataclass(frozen=True)
class ProviderStats:
    """A snapshot of ``GET /_control/stats``."""

    calls_total: int
    by_key: dict[str, dict[str, int]]
    by_outcome: dict[str, int]
    calls: list[dict[str, Any]]

    def outcome(self, name: str) -> int:
        return int(self.by_outcome.get(name, 0))

    def key_outcome(self, key: str, name: str) -> int:
        return int(self.by_key.get(key, {}).get(name, 0))

    def generate_calls(self, since: float = 0.0) -> list[dict[str, Any]]:
        """Generation calls (not model listings) started at or after ``since`` (provider's epoch clock)."""
        return [c for c in self.calls if c.get("path") != "/v1/models" and c.get("t", 0) >= since]

    def summary(self) -> str:
        return f"{self.calls_total} call(s); by outcome {self.by_outcome}; by key {self.by_key}"


class ProviderControl:
    """Client of the provider's control API."""

    def __init__(self, base_url: str, timeout: float = CONTROL_TIMEOUT) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout, headers={"User-Agent": "renderchaos"})

    @classmethod
    def of(cls, target: "Target", timeout: float = CONTROL_TIMEOUT) -> "ProviderControl":
        """The control API of ``target``'s provider (caller closes)."""
        return cls(control_url(target), timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "ProviderControl":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        try:
            resp = self.http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise TargetError(f"provider control {method} {path} at {self.base_url} failed: {exc}") from exc
        if resp.status_code != 200:
            raise TargetError(f"provider control {method} {path}: HTTP {resp.status_code}: {resp.text[:300]}",
                              status=resp.status_code)
        return resp.json()

    def set(self, **behaviour: Any) -> dict[str, Any]:
        """Partial update (fields of the provider's Behaviour, or ``mode=...``); returns the new behaviour."""
        return self._call("POST", "/_control", json=behaviour)

    def behaviour(self) -> dict[str, Any]:
        return self._call("GET", "/_control")

    def stats(self) -> ProviderStats:
        d = self._call("GET", "/_control/stats")
        return ProviderStats(d["calls_total"], d["by_key"], d["by_outcome"], d["calls"])

    def reset(self) -> dict[str, Any]:
        return self._call("POST", "/_control/reset")


@dataclass
class ProviderBehaviour:
    """The provider misbehaves as ``settings`` say (e.g. ``{"unauthorized": True}``,
    ``{"rate_limited_keys": ["k1"]}``, ``{"delay_s": 20}``); healed by a reset.

    The stats are cleared on injection too, so the scenario counts only the calls made
    under the fault.
    """

    control_url: str
    settings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, target: "Target", **settings: Any) -> "ProviderBehaviour":
        """``settings`` on ``target``'s provider (through its ``provider_control`` URL)."""
        return cls(control_url(target), dict(settings))

    def describe(self) -> str:
        return f"AI provider behaviour {self.settings}"

    def inject(self) -> None:
        try:
            with ProviderControl(self.control_url) as c:
                c.reset()
                applied = c.set(**self.settings)
        except TargetError as exc:
            raise FaultInjectionError(f"could not set {self.describe()}: {exc}") from exc
        for name, value in self.settings.items():
            if name != "mode" and applied.get(name) != value:
                raise FaultInjectionError(f"provider did not take {name}={value!r}: now {applied}")

    def heal(self) -> None:
        try:
            with ProviderControl(self.control_url) as c:
                c.set(mode="normal")  # behaviour only: the stats stay readable after the heal
        except TargetError as exc:
            raise FaultHealError(f"could not reset the AI provider: {exc}") from exc
