"""A real Prometheus (2.42, Debian's package; image recipe images/prometheus) next to a stack.

Why a real one (monitor.alerts): the runbook's alert rules (the platform's own rules file: its
adapter's ``alert_rules_file()``; the reference stack's is refstack/alerts/rules.yml) are
PromQL with ``rate()``, ``histogram_quantile()``, ``clamp_min`` and ``for:``; evaluating them with
a home-made interpreter would test the interpreter. Prometheus scrapes the SUT's /metrics like
production does (``up`` included, which only a scraper can produce) and its rule engine decides.

``alert_rules(...)`` rewrites the runbook's rules for a test: ``for:`` shortened, range windows
shortened (so an alert also *clears* within a test), optional threshold overrides; the
expressions are otherwise kept. ``PrometheusService`` runs it on the host network with a
scrape config for the API's metrics URL (job ``video-api``, as ServiceDown expects), labelled
with the stack's context; ``remove()`` it when done.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import yaml

from renderchaos.errors import ConfigError
from renderchaos.provisioning.stack.context import StackContext
from renderchaos.provisioning.stack.services import Readiness, Service, _http_ok
from renderchaos.wait import Poll

CONFIG_MOUNT = "/etc/renderchaos"


def prometheus_image() -> str:
    """The locally built image (``python -m renderchaos.provisioning.engine --local build prometheus``)."""
    from renderchaos.provisioning.engine.images import LOCAL_PREFIX, RECIPES, recipe_hash

    return f"{LOCAL_PREFIX}/prometheus:{recipe_hash(RECIPES['prometheus'])}"


def alert_rules(source: Path, for_s: float = 2.0, window: str = "20s",
                thresholds: dict[str, tuple[str, str]] | None = None) -> dict[str, Any]:
    """The runbook's rules in ``source`` with ``for:`` -> ``for_s`` and every ``[5m]`` -> ``[window]``.

    ``thresholds``: alert name -> (text in the expression, replacement), e.g.
    ``{"QueueBacklog": ("> 1000", "> 5")}``; a replacement that does not apply is an error.
    """
    doc = yaml.safe_load(source.read_text())
    thresholds = dict(thresholds or {})
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = f"{for_s:g}s"
            rule["expr"] = re.sub(r"\[\d+[smh]\]", f"[{window}]", rule["expr"])
            if rule["alert"] in thresholds:
                old, new = thresholds.pop(rule["alert"])
                if old not in rule["expr"]:
                    raise ConfigError(f"threshold {old!r} not in the expression of {rule['alert']}: {rule['expr']}")
                rule["expr"] = rule["expr"].replace(old, new)
    if thresholds:
        raise ConfigError(f"no such alert rules: {sorted(thresholds)}")
    return doc


class PrometheusService(Service):
    name = "prometheus"
    image_key = "prometheus"

    def __init__(self, ctx: StackContext, image: str, metrics_url: str, rules: dict[str, Any],
                 scrape_interval_s: float = 1.0, scrape_timeout_s: float = 1.0,
                 evaluation_interval_s: float = 1.0, job: str = "video-api") -> None:
        """``metrics_url``: where the platform's API exposes its metrics (scraped as ``job``)."""
        super().__init__(ctx, image)
        url = urlsplit(metrics_url)
        if not url.hostname or not url.port:
            raise ConfigError(f"metrics URL {metrics_url!r} needs a host and a port to scrape")
        self.config_dir = ctx.host_dir("prometheus")
        config = {
            "global": {"scrape_interval": f"{scrape_interval_s:g}s", "scrape_timeout": f"{scrape_timeout_s:g}s",
                       "evaluation_interval": f"{evaluation_interval_s:g}s"},
            "rule_files": [f"{CONFIG_MOUNT}/rules.yml"],
            "scrape_configs": [{"job_name": job, "metrics_path": url.path or "/", "scheme": url.scheme or "http",
                                "static_configs": [{"targets": [f"{url.hostname}:{url.port}"]}]}],
        }
        (self.config_dir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        (self.config_dir / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False, allow_unicode=True))
        for f in self.config_dir.iterdir():
            f.chmod(0o644)
        self.config_dir.chmod(0o755)

    def command(self) -> list[str]:
        return ["prometheus", f"--config.file={CONFIG_MOUNT}/prometheus.yml",
                f"--web.listen-address={self.ctx.host}:{self.port}", "--storage.tsdb.path=/tmp/prometheus",
                "--storage.tsdb.retention.time=2h"]

    def mounts_spec(self) -> dict[str, dict[str, str]]:
        return {str(self.config_dir): {"bind": CONFIG_MOUNT, "mode": "ro"}}

    def readiness(self) -> Readiness:
        return Readiness(f"GET /-/ready on {self.base_url()}", lambda: _http_ok(f"{self.base_url()}/-/ready"),
                         Poll(0.2))

    def base_url(self) -> str:
        return f"http://{self.ctx.host}:{self.port}"


__all__ = ["PrometheusService", "alert_rules", "prometheus_image", "httpx"]
