"""Faults this package adds to the catalog for load.chaos: the AI provider rate-limiting.

The provider's control API (``{target.provider_control_url}/_control``, capability
``provider_control``) switches the fake provider to answering 429 on the given keys; healed
by ``/_control/reset`` (normal behaviour). Same seam as every fault: describe / inject / heal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from renderchaos.errors import FaultHealError, FaultInjectionError


@dataclass
class ProviderRateLimited:
    """The AI provider answers 429 on ``keys`` (``["*"]``: every key) until healed."""

    control_url: str
    keys: list[str] = field(default_factory=lambda: ["*"])
    timeout: float = 5.0

    def describe(self) -> str:
        return f"AI provider rate-limits keys {self.keys}"

    def inject(self) -> None:
        try:
            r = httpx.post(f"{self.control_url}/_control", json={"mode": "rate_limit", "keys": self.keys},
                           timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise FaultInjectionError(f"could not reach the provider control API at {self.control_url}: {exc}") from exc
        if r.status_code // 100 != 2:
            raise FaultInjectionError(f"provider control API refused rate_limit: {r.status_code} {r.text[:200]}")

    def heal(self) -> None:
        try:
            r = httpx.post(f"{self.control_url}/_control/reset", timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise FaultHealError(f"could not reset the provider at {self.control_url}: {exc}") from exc
        if r.status_code // 100 != 2:
            raise FaultHealError(f"provider control API refused reset: {r.status_code} {r.text[:200]}")
