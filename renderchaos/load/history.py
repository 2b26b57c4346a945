"""Locust's per-second history (``<prefix>_stats_history.csv``, ``--csv-full-history``) and what
each fault did to it.

From the ``Aggregated`` rows: per-interval requests and failures are the differences of the
cumulative ``Total Request Count`` / ``Total Failure Count`` between consecutive rows (exact, not
Locust's smoothed ``Requests/s``); latency is Locust's *current* p95 (a sliding window, 5 s as
set in the locustfile). For each fault window [injected, healed]:

* ``error_rate`` and ``p95_ms`` during the fault (failures / requests inside the window; the
  worst current p95 seen in it);
* ``time_to_recover_s``: from the heal until the error rate over a trailing window and the p95
  are both back under the chaos thresholds and stay there for ``stable_s`` (None: never, within
  the history).

Plain functions over plain data; unit-tested on synthetic CSVs (tests/load).
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from renderchaos.load.thresholds import AGGREGATED, ChaosThresholds


@dataclass(frozen=True)
class Sample:
    t: float  # unix time (Locust's Timestamp)
    users: int
    requests: int  # cumulative
    failures: int  # cumulative
    p95_ms: float | None  # current-window p95 (None before any response)


@dataclass(frozen=True)
class Point:
    """One interval between consecutive samples."""

    t: float
    rps: float
    error_rate: float | None  # None: no request in this interval
    p95_ms: float | None
    requests: int
    failures: int


@dataclass(frozen=True)
class FaultWindow:
    name: str
    injected: float  # unix time
    healed: float  # unix time


@dataclass
class FaultImpact:
    name: str
    injected: float
    healed: float
    duration_s: float
    requests: int
    failures: int
    error_rate: float
    p95_ms: float | None
    time_to_recover_s: float | None
    recovered_at: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        ttr = "never" if self.time_to_recover_s is None else f"{self.time_to_recover_s:.1f}s"
        p95 = "n/a" if self.p95_ms is None else f"{self.p95_ms:.0f}ms"
        return (f"{self.name}: {self.duration_s:.1f}s, {self.failures}/{self.requests} failed "
                f"({self.error_rate:.1%}), p95 {p95}, recovered after {ttr}")


def _num(v: str | None) -> float | None:
    try:
        return float(v) if v not in (None, "", "N/A") else None
    except ValueError:
        return None


def read_history(path: Path) -> list[Sample]:
    """The ``Aggregated`` rows of a stats-history CSV, in time order (missing file: empty)."""
    if not Path(path).exists():
        return []
    out: list[Sample] = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row.get("Name") != AGGREGATED:
                continue
            t = _num(row.get("Timestamp"))
            if t is None:
                continue
            p95 = _num(row.get("95%"))
            out.append(Sample(t=t, users=int(_num(row.get("User Count")) or 0),
                              requests=int(_num(row.get("Total Request Count")) or 0),
                              failures=int(_num(row.get("Total Failure Count")) or 0),
                              p95_ms=p95 if p95 else None))  # Locust writes 0 for "no data yet"
    out.sort(key=lambda s: s.t)
    return out


def points(samples: Sequence[Sample]) -> list[Point]:
    out = []
    for a, b in zip(samples, samples[1:]):
        dt = b.t - a.t
        if dt <= 0:
            continue
        req, fail = max(0, b.requests - a.requests), max(0, b.failures - a.failures)
        out.append(Point(t=b.t, rps=req / dt, error_rate=(fail / req) if req else None, p95_ms=b.p95_ms,
                         requests=req, failures=fail))
    return out


def _window(samples: Sequence[Sample], start: float, end: float) -> tuple[int, int]:
    """Requests and failures completed in (start, end], from the cumulative counters."""
    before = [s for s in samples if s.t <= start]
    inside = [s for s in samples if s.t <= end]
    if not inside:
        return 0, 0
    a = before[-1] if before else samples[0]
    b = inside[-1]
    return max(0, b.requests - a.requests), max(0, b.failures - a.failures)


def healthy_at(samples: Sequence[Sample], t: float, c: ChaosThresholds) -> bool | None:
    """Are the error rate over (t - window_s, t] and the current p95 at ``t`` under the chaos
    thresholds? None: no request in that window (cannot tell)."""
    req, fail = _window(samples, t - c.window_s, t)
    if req == 0:
        return None
    at = [s for s in samples if s.t <= t]
    p95 = at[-1].p95_ms if at else None
    return fail / req <= c.max_failure_ratio and (p95 is None or p95 <= c.p95_ms)


def recovered_at(samples: Sequence[Sample], healed: float, c: ChaosThresholds) -> float | None:
    """First sample time >= healed from which the run stays healthy for ``stable_s`` (needs the
    history to extend that far)."""
    after = [s for s in samples if s.t >= healed]
    for i, s in enumerate(after):
        if healthy_at(samples, s.t, c) is not True:
            continue
        run = [x for x in after[i:] if x.t <= s.t + c.stable_s]
        if run[-1].t < s.t + c.stable_s - 1.0:  # history does not (yet) cover the stable period
            return None
        if all(healthy_at(samples, x.t, c) is not False for x in run):
            return s.t
    return None


def impact(samples: Sequence[Sample], w: FaultWindow, c: ChaosThresholds) -> FaultImpact:
    req, fail = _window(samples, w.injected, w.healed)
    during = [s.p95_ms for s in samples if w.injected <= s.t <= w.healed and s.p95_ms is not None]
    rec = recovered_at(samples, w.healed, c)
    return FaultImpact(name=w.name, injected=w.injected, healed=w.healed, duration_s=round(w.healed - w.injected, 2),
                       requests=req, failures=fail, error_rate=round(fail / req, 4) if req else 0.0,
                       p95_ms=max(during) if during else None,
                       time_to_recover_s=None if rec is None else round(max(0.0, rec - w.healed), 2),
                       recovered_at=rec)


def analyse(samples: Sequence[Sample], windows: Sequence[FaultWindow], c: ChaosThresholds) -> list[FaultImpact]:
    return [impact(samples, w, c) for w in windows]
