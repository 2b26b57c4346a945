"""Reading a Prometheus server's alerts and rules (Prometheus's own HTTP API v1).

The paths below belong to Prometheus (https://prometheus.io/docs/prometheus/latest/querying/api/),
the server the harness starts next to the platform, NOT to the platform under test.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class AlertState:
    name: str
    state: str  # pending | firing
    labels: dict[str, str]
    value: str


#: Prometheus's HTTP API prefix (Prometheus's own API, not the platform's)
PROMETHEUS_API = "/api/v1"


class PrometheusProbe:
    def __init__(self, base_url: str, timeout: float = 5.0) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=timeout, headers={"User-Agent": "renderchaos"})

    def close(self) -> None:
        self.http.close()

    def alerts(self) -> list[AlertState]:
        data = self.http.get(f"{PROMETHEUS_API}/alerts").json()["data"]["alerts"]
        return [AlertState(a["labels"].get("alertname", "?"), a["state"], a["labels"], str(a.get("value")))
                for a in data]

    def firing(self, name: str) -> list[AlertState]:
        return [a for a in self.alerts() if a.name == name and a.state == "firing"]

    def active(self, name: str) -> list[AlertState]:
        """Pending or firing."""
        return [a for a in self.alerts() if a.name == name]

    def rules(self) -> dict[str, str]:
        """Alert name -> rule health (``ok`` once evaluated without error)."""
        groups = self.http.get(f"{PROMETHEUS_API}/rules").json()["data"]["groups"]
        return {r["name"]: r.get("health", "unknown") for g in groups for r in g["rules"] if r.get("type") == "alerting"}

    def query(self, expr: str) -> list[dict]:
        return self.http.get(f"{PROMETHEUS_API}/query", params={"query": expr}).json()["data"]["result"]

    def summary(self) -> str:
        try:
            return ", ".join(f"{a.name}={a.state}" for a in self.alerts()) or "no alerts"
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            return f"(alerts unavailable: {exc})"
