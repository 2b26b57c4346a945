"""Suite results: results.json, report.html and the run history, built from test reports.

Scenario runs put their journal in ``user_properties`` (key ``renderchaos``), which xdist
ships to the controller, so this works the same with and without ``-n``.

An entry is ``passed`` only when its call phase reported a pass. A scenario whose setup passed
but whose call never reported (Ctrl-C, SIGTERM, a killed worker), or whose call died of a
KeyboardInterrupt, is ``interrupted``: a run stopped half way never publishes false passes.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from renderchaos.report.doc import Doc, Entry, summary
from renderchaos.report.history import History
from renderchaos.report.page import ReportInputs, render_html

__all__ = ["PROPERTY", "Collector", "render_html", "write_report", "build_doc"]

PROPERTY = "renderchaos"
_INTERRUPT_MARK = "KeyboardInterrupt"


@dataclass
class _Progress:
    """What reports arrived for one test (kept beside the entry, not in it)."""

    phases: set[str] = field(default_factory=set)
    decided: bool = False  # setup failed or skipped, the call reported, or the worker crashed


@dataclass
class Collector:
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)  # nodeid -> entry
    progress: dict[str, _Progress] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)  # nodeid -> epoch (pytest_runtest_logstart)

    def add(self, nodeid: str, when: str, outcome: str, props: list[tuple[str, Any]], duration: float,
            longrepr: str, crash: str = "", *, wasxfail: str | None = None) -> None:
        """One test report (``pytest_runtest_logreport``): ``when`` is setup, call or teardown."""
        journal = next((json.loads(v) for k, v in props if k == PROPERTY), None)
        scenario = next((v for k, v in props if k == "scenario"), None)
        if journal is None and scenario is None and nodeid not in self.entries:
            return
        entry = self.entries.setdefault(nodeid, {"nodeid": nodeid, "outcome": "interrupted", "duration_s": 0.0})
        prog = self.progress.setdefault(nodeid, _Progress())
        prog.phases.add(when)
        if journal:
            outcome_before = entry["outcome"]
            entry.update(journal)
            entry["outcome"] = outcome_before  # the journal never decides the outcome
        elif scenario and "id" not in entry:
            entry["id"] = scenario
        entry["duration_s"] = round(entry["duration_s"] + duration, 3)
        failure = (crash[:6000] + "\n---\n" if crash else "") + longrepr[-1500:]
        interrupted = _INTERRUPT_MARK in crash or _INTERRUPT_MARK in longrepr[-300:]
        if when == "setup":
            if outcome == "failed":
                prog.decided = True
                entry["outcome"] = "interrupted" if interrupted else "error"
                entry["failure"] = failure
            elif outcome == "skipped":
                prog.decided = True
                entry["outcome"] = "xfailed" if wasxfail is not None else "skipped"
                entry["reason"] = (wasxfail or longrepr)[-300:]
        elif when == "call":
            prog.decided = True
            if outcome == "passed":
                entry["outcome"] = "xpassed" if wasxfail is not None else "passed"
                if wasxfail:
                    entry["reason"] = wasxfail[-300:]
            elif outcome == "skipped":
                entry["outcome"] = "xfailed" if wasxfail is not None else "skipped"
                entry["reason"] = (wasxfail or longrepr)[-300:]
            else:
                # the exception's own message first (ScenarioFailed: scenario, runbook, expected,
                # observed), whole; then the tail of the traceback for context
                entry["outcome"] = "interrupted" if interrupted else "failed"
                entry["failure"] = failure
        elif when == "teardown" and outcome == "failed":
            if entry["outcome"] in ("passed", "xpassed", "xfailed", "skipped"):
                entry["outcome"] = "error"
                entry["failure"] = failure
            else:  # the call's failure stays the headline; the teardown's is added to it
                entry["failure"] = (entry.get("failure", "") + "\n--- teardown ---\n" + failure)[-9000:]
        elif when not in ("setup", "call", "teardown") and outcome == "failed":
            # xdist's "worker 'gw0' crashed while running ..." (when '???'): not a pass, not a
            # user's interrupt either
            prog.decided = True
            entry["outcome"] = "error"
            entry["failure"] = failure

    def add_report(self, report: Any) -> None:
        """Convenience over :meth:`add` for a ``pytest.TestReport``."""
        crash = getattr(getattr(report.longrepr, "reprcrash", None), "message", "") or ""
        self.add(report.nodeid, report.when, report.outcome, list(report.user_properties), report.duration,
                 str(report.longrepr or ""), crash, wasxfail=getattr(report, "wasxfail", None))

    def logstart(self, nodeid: str) -> None:
        """``pytest_runtest_logstart``: a test began. One that never reports anything is listed as
        interrupted when the run is."""
        self.started.setdefault(nodeid, time.time())

    def results(self, interrupted: bool = False) -> list[Entry]:
        out: list[dict[str, Any]] = []
        for nodeid, entry in self.entries.items():
            e = dict(entry)
            prog = self.progress.get(nodeid, _Progress())
            if not prog.decided:
                e["outcome"] = "interrupted"  # set up, then never finished its call
            out.append(e)
        if interrupted:
            for nodeid, t in self.started.items():
                if nodeid not in self.entries and "[" in nodeid:  # parametrized: a scenario test
                    out.append({"nodeid": nodeid, "id": nodeid.rsplit("[", 1)[1].rstrip("]"),
                                "outcome": "interrupted", "duration_s": 0.0, "started_at": t,
                                "notes": ["interrupted before its setup reported"]})
        return sorted(out, key=lambda e: e.get("id", e["nodeid"]))  # type: ignore[return-value]

    def write(self, out_dir: Path, header: dict[str, Any]) -> Path | None:
        """results.json, report.html and the history in ``out_dir``; None when no scenario ran.

        ``header`` holds the run's fields (profile, seed, ...); ``header["interrupted"] = True``
        says the session was stopped (every test without a finished call is then interrupted).
        """
        doc = self.doc(header)
        if not doc["results"]:
            return None
        return write_report(out_dir, doc)

    def doc(self, header: dict[str, Any]) -> Doc:
        """The results document of the run so far (what :meth:`write` writes; what
        :func:`renderchaos.report.otel.export_run` sends)."""
        return build_doc(header, self.results(bool(header.get("interrupted"))))


def build_doc(header: dict[str, Any], results: list[Entry]) -> Doc:
    doc: dict[str, Any] = {"generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **header}
    counts = summary(results)
    doc["interrupted"] = bool(header.get("interrupted")) or bool(counts.get("interrupted"))
    doc["summary"] = counts
    doc["results"] = results
    return doc  # type: ignore[return-value]


def write_report(out_dir: Path, doc: Doc, keep: int = 50) -> Path:
    """Write ``results.json`` and ``report.html`` to ``out_dir`` and add the run to
    ``out_dir/history`` (the last ``keep`` runs). The page compares this run with the earlier
    ones, and shows ``mutation.json`` and ``load/`` when they are there. Returns results.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if "summary" not in doc:
        doc["summary"] = summary(doc.get("results", []))
    history = History(out_dir / "history", keep=keep)
    earlier = history.load(exclude_run=doc.get("run_id"))
    path = out_dir / "results.json"
    path.write_text(dumps(doc))
    inputs = ReportInputs.gather(out_dir, earlier)
    (out_dir / "report.html").write_text(render_html(doc, inputs))
    history.append(doc)
    return path


def dumps(doc: Doc) -> str:
    """results.json text: indented, but each probe series on one line (thousands of numbers
    one per line would bury the rest)."""
    series: list[str] = []
    results = []
    for e in doc.get("results", []):
        samples = e.get("samples")
        if isinstance(samples, dict) and isinstance(samples.get("series"), dict):
            compact = {}
            for name, data in samples["series"].items():
                compact[name] = f"\x00series{len(series)}\x00"
                series.append(json.dumps(data, separators=(",", ":"), ensure_ascii=False))
            e = {**e, "samples": {**samples, "series": compact}}
        results.append(e)
    text = json.dumps({**doc, "results": results}, indent=2, ensure_ascii=False)
    for i, s in enumerate(series):
        text = text.replace(f'"\\u0000series{i}\\u0000"', s, 1)
    return text
