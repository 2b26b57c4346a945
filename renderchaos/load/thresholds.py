"""Load thresholds: what a load run must achieve, and which threshold broke by how much.

Plain data, no Locust import: the same :func:`evaluate` runs inside Locust (on the master, at
``quitting``, to set the process exit code) and in pytest (on Locust's ``_stats.csv``), so the
exit code and the test's message always agree.

Latency thresholds are keyed by **operation** (the platform adapter call a Locust user made,
:mod:`renderchaos.load.ops`: ``submit``, ``job``, ``list``, ``download``, ``ai_submit``,
``ai_job``, ``health``) or ``Aggregated``; the same names work against any platform. An
operation the run did not make (an optional group the adapter lacks, a weight of 0) is not
judged. The configuration is TOML (``renderchaos/load/thresholds.toml`` is the default)::

    [load]
    max_failure_ratio = 0.01      # failures / requests over the whole run (Aggregated)
    min_rps = 2.0                 # Aggregated requests per second, whole run
    [load.p95_ms]                 # per operation, or "Aggregated"
    submit = 800
    [load.p99_ms]
    Aggregated = 3000
    [chaos]
    max_failure_ratio = 0.05      # "back under threshold" after a heal (trailing window)
    p95_ms = 2000                 # Aggregated windowed p95 "back under threshold"
    recovery_deadline_s = 60      # heal -> back under both, else the fault fails the run
    stable_s = 3                  # must stay under both this long to count as recovered

Overrides without editing the file: ``RENDERCHAOS_LOAD_THRESHOLDS=/path/file.toml`` and
``RENDERCHAOS_LOAD_SET="min_rps=500;p95_ms.submit=5"`` (``;``-separated ``key=value``; dotted
keys reach into ``p95_ms`` / ``p99_ms`` / ``chaos``).
"""

from __future__ import annotations

import csv
import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Mapping

from renderchaos.errors import ConfigError
from renderchaos.load.ops import OPERATIONS

DEFAULT_FILE = Path(__file__).with_name("thresholds.toml")
ENV_FILE = "RENDERCHAOS_LOAD_THRESHOLDS"
ENV_SET = "RENDERCHAOS_LOAD_SET"
AGGREGATED = "Aggregated"


@dataclass(frozen=True)
class ChaosThresholds:
    max_failure_ratio: float = 0.05
    p95_ms: float = 2000.0
    recovery_deadline_s: float = 60.0
    stable_s: float = 3.0
    window_s: float = 3.0  # trailing window for the error rate after a heal


@dataclass(frozen=True)
class Thresholds:
    max_failure_ratio: float = 0.01
    min_rps: float = 0.0
    p95_ms: Mapping[str, float] = field(default_factory=dict)
    p99_ms: Mapping[str, float] = field(default_factory=dict)
    chaos: ChaosThresholds = field(default_factory=ChaosThresholds)

    def describe(self) -> str:
        parts = [f"failure ratio <= {self.max_failure_ratio:g}", f"throughput >= {self.min_rps:g} req/s"]
        parts += [f"p95 {k} <= {v:g} ms" for k, v in self.p95_ms.items()]
        parts += [f"p99 {k} <= {v:g} ms" for k, v in self.p99_ms.items()]
        return ", ".join(parts)


@dataclass(frozen=True)
class RequestStat:
    """One row of Locust's final statistics (``_stats.csv``), or of ``environment.stats``."""

    key: str  # the operation ("submit"), or "Aggregated"
    requests: int
    failures: int
    p95_ms: float | None
    p99_ms: float | None
    rps: float

    @property
    def failure_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class Breach:
    threshold: str  # e.g. "p95 submit"
    limit: float
    observed: float
    unit: str

    @property
    def by(self) -> str:
        """How far past the limit, absolute and relative."""
        delta = self.observed - self.limit
        rel = f" ({self.observed / self.limit:.1f}x the limit)" if self.limit else ""
        return f"{abs(delta):.4g}{self.unit} {'over' if delta > 0 else 'under'}{rel}"

    def __str__(self) -> str:
        op = ">=" if self.threshold.startswith(("throughput", "requests made")) else "<="
        return (f"{self.threshold}: observed {self.observed:.4g}{self.unit}, limit {op} {self.limit:g}{self.unit} "
                f"-> {self.by}")


# ---------------------------------------------------------------------------------------
def _apply(raw: dict, key: str, value: str) -> None:
    head, _, rest = key.partition(".")
    if head in ("p95_ms", "p99_ms"):
        if not rest:
            raise ConfigError(f"{ENV_SET}: {key!r} needs an operation, e.g. p95_ms.submit=500 "
                              f"(operations: {', '.join(OPERATIONS)}, or Aggregated)")
        raw.setdefault("load", {}).setdefault(head, {})[rest] = float(value)
    elif head == "chaos":
        raw.setdefault("chaos", {})[rest] = float(value)
    else:
        raw.setdefault("load", {})[head] = float(value)


def load(path: Path | str | None = None, overrides: str | None = None) -> Thresholds:
    """Read thresholds: ``path`` (or ``$RENDERCHAOS_LOAD_THRESHOLDS``, or the default file),
    then the ``key=value;...`` overrides (or ``$RENDERCHAOS_LOAD_SET``)."""
    path = Path(path or os.environ.get(ENV_FILE) or DEFAULT_FILE)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"load thresholds file {path} does not exist (set {ENV_FILE} or fix the path)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"load thresholds file {path} is not valid TOML: {exc}") from exc
    overrides = os.environ.get(ENV_SET, "") if overrides is None else overrides
    for item in filter(None, (s.strip() for s in overrides.split(";"))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"{ENV_SET}: {item!r} is not key=value")
        try:
            _apply(raw, key.strip(), value.strip())
        except ValueError:
            raise ConfigError(f"{ENV_SET}: {item!r}: value must be a number") from None
    return from_dict(raw, str(path))


def from_dict(raw: dict, where: str = "thresholds") -> Thresholds:
    lo, ch = dict(raw.get("load", {})), dict(raw.get("chaos", {}))
    known = {"max_failure_ratio", "min_rps", "p95_ms", "p99_ms"}
    unknown = set(lo) - known
    if unknown:
        raise ConfigError(f"{where}: unknown [load] keys {sorted(unknown)}; known: {sorted(known)}")
    chaos_known = set(ChaosThresholds.__dataclass_fields__)
    if set(ch) - chaos_known:
        raise ConfigError(f"{where}: unknown [chaos] keys {sorted(set(ch) - chaos_known)}; known: {sorted(chaos_known)}")
    for name in ("p95_ms", "p99_ms"):
        table = lo.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: [load.{name}] maps operations to milliseconds")
        _check_keys(table, f"{where} [load.{name}]")
    try:
        return Thresholds(max_failure_ratio=float(lo.get("max_failure_ratio", 0.01)),
                          min_rps=float(lo.get("min_rps", 0.0)),
                          p95_ms={k: float(v) for k, v in lo.get("p95_ms", {}).items()},
                          p99_ms={k: float(v) for k, v in lo.get("p99_ms", {}).items()},
                          chaos=replace(ChaosThresholds(), **{k: float(v) for k, v in ch.items()}))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: thresholds must be numbers: {exc}") from exc


def _check_keys(table: Mapping[str, object], where: str) -> None:
    """Latency thresholds name an operation (or Aggregated): a key that names nothing would
    silently judge nothing (e.g. an HTTP route from before the platform seam)."""
    known = (*OPERATIONS, AGGREGATED)
    unknown = sorted(k for k in table if k not in known)
    if unknown:
        raise ConfigError(f"{where}: {unknown} not an operation; latency thresholds are keyed by the operation the "
                          f"Locust users perform through the platform adapter: {', '.join(known)}")


# ---------------------------------------------------------------------------------------
def evaluate(stats: Iterable[RequestStat], t: Thresholds) -> list[Breach]:
    """Every threshold the run broke (empty: the run passed)."""
    rows = {s.key: s for s in stats}
    out: list[Breach] = []
    agg = rows.get(AGGREGATED)
    if agg is None or agg.requests == 0:
        return [Breach("requests made (none recorded: did the Locust workers run? see its log)", 1, 0, "")]
    if agg.failure_ratio > t.max_failure_ratio:
        out.append(Breach("failure ratio (Aggregated)", t.max_failure_ratio, agg.failure_ratio, ""))
    if agg.rps < t.min_rps:
        out.append(Breach("throughput (Aggregated req/s)", t.min_rps, agg.rps, " req/s"))
    for label, limits, attr in (("p95", t.p95_ms, "p95_ms"), ("p99", t.p99_ms, "p99_ms")):
        for key, limit in limits.items():
            row = rows.get(key)
            if row is None or row.requests == 0:
                continue  # an operation this run did not make (optional group, weight 0) is not judged
            value = getattr(row, attr)
            if value is not None and value > limit:
                out.append(Breach(f"{label} {key}", limit, value, " ms"))
    return out


def _num(v: str) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None  # "N/A" before any request


def key_of(request_type: str, name: str) -> str:
    """The statistics key of a Locust entry: the operation (our users report request type and
    name both as the operation), ``Aggregated``, or ``"TYPE name"`` for anything else."""
    if name == AGGREGATED or request_type in ("", name):
        return name
    return f"{request_type} {name}"


def read_stats_csv(path: Path) -> list[RequestStat]:
    """Locust's ``<prefix>_stats.csv`` (final numbers per operation plus Aggregated)."""
    out = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            key = key_of(row.get("Type") or "", row["Name"])
            out.append(RequestStat(key=key, requests=int(row["Request Count"]), failures=int(row["Failure Count"]),
                                   p95_ms=_num(row.get("95%", "")), p99_ms=_num(row.get("99%", "")),
                                   rps=_num(row.get("Requests/s", "")) or 0.0))
    return out


def from_locust_stats(stats: object) -> list[RequestStat]:
    """Adapter for ``environment.stats`` (a ``locust.stats.RequestStats``) inside Locust."""
    def conv(key: str, e: object) -> RequestStat:
        n = e.num_requests  # type: ignore[attr-defined]
        pct = (lambda p: e.get_response_time_percentile(p)) if n else (lambda p: None)  # type: ignore[attr-defined]
        return RequestStat(key, n, e.num_failures, pct(0.95), pct(0.99), e.total_rps)  # type: ignore[attr-defined]

    rows = [conv(key_of(e.method or "", e.name), e) for e in stats.entries.values()]  # type: ignore[attr-defined]
    rows.append(conv(AGGREGATED, stats.total))  # type: ignore[attr-defined]
    return rows
