"""The run history (``reports/history/``) and the trend of this run against it.

Each run adds one small file (``<UTC time>_<run id>.json``: outcome, time to detect and time to
recover per scenario); only the last ``keep`` (50) are kept. The trend compares the current run
with the earlier runs of the same platform (or target) and the same planted bugs:

* **new failure**: failed or error now; passed the last time it ran (or never ran before);
* **fixed**: passed now, failed or error the last time it ran;
* **time-to-recover regression**: ``time_to_recover_s >= factor x`` the median of its earlier
  measured values (default 2x), and at least ``min_increase_s`` (1 s) more, so 0.1 s -> 0.2 s
  is not news;
* **flaky**: its outcome flipped between pass and fail at least twice over the last
  ``flaky_window`` runs (this one included); skipped and interrupted runs do not count.
"""

from __future__ import annotations

import json
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from renderchaos.report.doc import Doc, num, scenario_id

PASS = frozenset({"passed", "xfailed", "xpassed"})
FAIL = frozenset({"failed", "error"})


@dataclass
class History:
    directory: Path
    keep: int = 50

    def load(self, exclude_run: str | None = None) -> list[dict[str, Any]]:
        """Earlier runs, oldest first. Unreadable files are skipped (named in ``note``)."""
        if not self.directory.is_dir():
            return []
        runs = []
        for p in sorted(self.directory.glob("*.json")):
            try:
                run = json.loads(p.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(run, dict) and (exclude_run is None or run.get("run_id") != exclude_run):
                runs.append(run)
        return runs

    def append(self, doc: Doc) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        run_id = str(doc.get("run_id") or "run")
        stamp = re.sub(r"[^0-9TZ]", "", str(doc.get("generated_at") or "")) or "0"
        safe_id = re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)
        for old in self.directory.glob(f"*_{safe_id}.json"):  # the same run written twice
            old.unlink()
        path = self.directory / f"{stamp}_{safe_id}.json"
        path.write_text(json.dumps(compact(doc), ensure_ascii=False))
        files = sorted(self.directory.glob("*.json"))
        for old in files[:max(0, len(files) - self.keep)]:
            old.unlink()
        return path


def compact(doc: Doc) -> dict[str, Any]:
    """What the history keeps of a run."""
    keys = ("run_id", "generated_at", "profile", "seed", "platform", "target", "broken", "revision",
            "interrupted", "elapsed_s", "summary")
    out: dict[str, Any] = {k: doc.get(k) for k in keys if k in doc}
    out["results"] = [{"id": scenario_id(e), "outcome": e.get("outcome"),
                       "time_to_detect_s": e.get("time_to_detect_s"),
                       "time_to_recover_s": e.get("time_to_recover_s"),
                       "duration_s": e.get("duration_s")} for e in doc.get("results", [])]
    return out


def _kind(run: Any) -> tuple[str, tuple[str, ...]]:
    return (str(run.get("platform") or run.get("target") or ""), tuple(sorted(run.get("broken") or ())))


@dataclass
class ScenarioTrend:
    id: str
    outcomes: list[str]  # oldest first, the current run last (window of the strip)
    new_failure: bool = False
    fixed: bool = False
    flips: int = 0
    flaky: bool = False
    ttr: float | None = None
    ttr_median: float | None = None
    ttr_runs: int = 0
    ttr_regression: bool = False


@dataclass
class Trend:
    runs: list[dict[str, Any]]  # the comparable earlier runs, oldest first
    skipped_runs: int  # earlier runs of another platform / target / planted bugs
    current: dict[str, Any] = field(default_factory=dict)  # this run, as the history keeps it
    scenarios: dict[str, ScenarioTrend] = field(default_factory=dict)

    @property
    def new_failures(self) -> list[ScenarioTrend]:
        return [s for s in self.scenarios.values() if s.new_failure]

    @property
    def fixed(self) -> list[ScenarioTrend]:
        return [s for s in self.scenarios.values() if s.fixed]

    @property
    def ttr_regressions(self) -> list[ScenarioTrend]:
        return [s for s in self.scenarios.values() if s.ttr_regression]

    @property
    def flaky(self) -> list[ScenarioTrend]:
        return [s for s in self.scenarios.values() if s.flaky]


def trend(doc: Doc, earlier: list[dict[str, Any]], factor: float = 2.0, min_increase_s: float = 1.0,
          flaky_window: int = 10, strip: int = 12) -> Trend:
    kind = _kind(doc)
    runs = [r for r in earlier if _kind(r) == kind]
    out = Trend(runs=runs, skipped_runs=len(earlier) - len(runs), current=compact(doc))
    per_run = [{e.get("id"): e for e in r.get("results", []) if isinstance(e, dict)} for r in runs]
    for entry in doc.get("results", []):
        sid = scenario_id(entry)
        past = [pr[sid] for pr in per_run if sid in pr]
        outcomes = [str(p.get("outcome")) for p in past] + [str(entry.get("outcome"))]
        st = ScenarioTrend(sid, outcomes[-strip:])
        now = str(entry.get("outcome"))
        decided = [o for o in outcomes[:-1] if o in PASS or o in FAIL]
        last = decided[-1] if decided else None
        st.new_failure = now in FAIL and (last is None or last in PASS) and bool(runs)
        st.fixed = now in PASS and last in FAIL
        window = [o for o in outcomes if o in PASS or o in FAIL][-flaky_window:]
        st.flips = sum(1 for a, b in zip(window, window[1:]) if (a in PASS) != (b in PASS))
        st.flaky = st.flips >= 2
        st.ttr = num(entry.get("time_to_recover_s"))
        earlier_ttr = [v for v in (num(p.get("time_to_recover_s")) for p in past) if v is not None]
        st.ttr_runs = len(earlier_ttr)
        if earlier_ttr:
            st.ttr_median = statistics.median(earlier_ttr)
            st.ttr_regression = (st.ttr is not None and st.ttr >= factor * st.ttr_median
                                 and st.ttr - st.ttr_median >= min_increase_s)
        out.scenarios[sid] = st
    return out
