"""The shape of ``results.json`` (documented field by field in reports/README.md).

Plain TypedDicts, all ``total=False``: a document from an older run or an external target may
lack any field, and every reader here (page, history, telemetry) degrades to "not recorded"
instead of failing. Times inside an entry (phases, faults, samples) are seconds since that
scenario's run began; ``started_at`` (epoch seconds, wall clock) anchors them.
"""

from __future__ import annotations

import re
from typing import Any, TypedDict

#: Outcomes an entry can have. ``interrupted``: the test's call phase never finished
#: (Ctrl-C, SIGTERM from a CI timeout, a killed worker): never read as a pass.
OUTCOMES = ("failed", "error", "interrupted", "xpassed", "passed", "xfailed", "skipped")
BAD = frozenset({"failed", "error", "interrupted"})


class Phase(TypedDict, total=False):
    name: str
    started: float
    ended: float | None
    ok: bool | None
    note: str
    duration: float | None


class FaultRecord(TypedDict, total=False):
    description: str
    injected_at: float
    healed_at: float | None  # None: never healed
    heal_error: str | None


class Samples(TypedDict, total=False):
    interval_s: float
    series: dict[str, list[list[Any]]]  # latency: [t, ms, status|None]; jobs: [t, {state: n}]; queue_depth: [t, n]


class Ledger(TypedDict, total=False):
    accepted: int
    completed: int
    failed: int
    timeout: int
    cancelled: int
    lost: int
    stuck: int
    duplicated: int
    credits_checked: int


class Limits(TypedDict, total=False):
    detect_s: float | None
    recover_s: float | None


class Entry(TypedDict, total=False):
    nodeid: str
    id: str
    title: str
    outcome: str
    duration_s: float
    started_at: float | None
    runbook: str
    runbook_key: str
    runbook_section: str
    time_to_detect_s: float | None
    time_to_recover_s: float | None
    limits: Limits
    accepted: int
    lost: int
    stuck: int
    duplicated: int
    recovered: int
    credit_errors: int
    output_errors: int
    orphan_ffmpeg: int | None
    health_ok: bool | None
    canary_ok: bool | None
    ledger: Ledger
    phases: list[Phase]
    faults: list[FaultRecord]
    faults_active_at_end: int
    samples: Samples | None
    notes: list[str]
    extra: dict[str, Any]
    failure: str
    reason: str
    replay: str


class Section(TypedDict, total=False):
    id: str  # what scenario section texts start with: "§一.3", "§2.1", "监控和告警 2"
    title: str  # as written in the runbook
    title_en: str
    level: int  # 1: a top-level part, 2: a subsection of the part above it, ...


class RunbookInfo(TypedDict, total=False):
    key: str
    title: str
    title_en: str
    file: str
    language: str
    sections: list[Section]


class Doc(TypedDict, total=False):
    generated_at: str
    run_id: str
    profile: str
    seed: int
    target: str
    platform: str
    broken: list[str]
    elapsed_s: float
    interrupted: bool
    revision: str
    engine: dict[str, str]
    images: dict[str, str]
    command: str
    summary: dict[str, int]
    runbooks: list[RunbookInfo]
    results: list[Entry]


def summary(results: list[Entry]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in results:
        o = r.get("outcome", "passed")
        out[o] = out.get(o, 0) + 1
    return out


def verdict(doc: Doc) -> str:
    """``interrupted``, ``failed`` or ``passed`` for the run as a whole."""
    counts = doc.get("summary") or summary(doc.get("results", []))
    if doc.get("interrupted") or counts.get("interrupted"):
        return "interrupted"
    if any(counts.get(o) for o in ("failed", "error")):
        return "failed"
    return "passed"


def scenario_id(entry: Entry) -> str:
    if entry.get("id"):
        return str(entry["id"])
    nodeid = entry.get("nodeid", "?")
    m = re.search(r"\[([^\]]+)\]$", nodeid)
    return m.group(1) if m else nodeid


_RUNBOOK_TEXT = re.compile(r"^\s*([A-Z])\s+(.*?)(?:\s+\(([^()]*\.txt)\))?\s*$")


def runbook_parts(entry: Entry) -> tuple[str | None, str | None]:
    """(runbook key, section text) of an entry, from the explicit fields or the ``runbook`` text
    ("R §一.3 渲染超时 (render-platform-troubleshooting.zh.txt)") of older documents."""
    key, section = entry.get("runbook_key"), entry.get("runbook_section")
    if key and section:
        return key, section
    m = _RUNBOOK_TEXT.match(entry.get("runbook") or "")
    if m:
        return key or m.group(1), section or m.group(2)
    return key, section


_FAIL_FIELD = re.compile(r"^\s+(runbook|expected|observed): ", re.M)


def failure_parts(entry: Entry) -> dict[str, str]:
    """The ScenarioFailed message split into headline, runbook, expected, observed (whatever of
    them the failure text has) and the rest (traceback tail)."""
    text = entry.get("failure") or ""
    head, _, tail = text.partition("\n---\n")
    out: dict[str, str] = {}
    marks = list(_FAIL_FIELD.finditer(head))
    if not marks:
        out["message"] = head.strip() if tail else text.strip()
        out["rest"] = tail.strip() if tail else ""
        return out
    out["headline"] = head[:marks[0].start()].strip()
    for m, nxt in zip(marks, marks[1:] + [None]):
        out[m.group(1)] = head[m.end():nxt.start() if nxt else len(head)].strip()
    out["rest"] = tail.strip()
    return out


def rel_end(entry: Entry) -> float:
    """The last moment recorded in an entry, in seconds since its run began (0 when none)."""
    t = 0.0
    for p in entry.get("phases") or []:
        for k in ("started", "ended"):
            if isinstance(p.get(k), (int, float)):
                t = max(t, float(p[k]))  # type: ignore[arg-type]
    for f in entry.get("faults") or []:
        for k in ("injected_at", "healed_at"):
            if isinstance(f.get(k), (int, float)):
                t = max(t, float(f[k]))  # type: ignore[arg-type]
    samples = entry.get("samples") or {}
    for series in (samples.get("series") or {}).values():
        if series and isinstance(series[-1], list) and series[-1] and isinstance(series[-1][0], (int, float)):
            t = max(t, float(series[-1][0]))
    return t


def num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def fault_windows(entry: Entry) -> tuple[list[FaultRecord], bool]:
    """The entry's fault audit, or, for a document without one (older runs), windows derived from
    the phase journal: each ``inject`` phase until the end of the next ``remedy`` (or the start of
    ``steady_state_after``, where every fault is healed). The flag says they were derived."""
    if "faults" in entry:
        return [f for f in entry.get("faults") or [] if num(f.get("injected_at")) is not None], False
    out: list[FaultRecord] = []
    open_: list[FaultRecord] = []
    for p in entry.get("phases") or []:
        start, end = num(p.get("started")), num(p.get("ended"))
        name = p.get("name")
        if name == "inject" and start is not None:
            rec: FaultRecord = {"description": str(p.get("note") or "fault"), "injected_at": start, "healed_at": None}
            out.append(rec)
            open_.append(rec)
        elif name in ("remedy", "steady_state_after") and open_:
            t = end if name == "remedy" and end is not None else start
            for rec in open_:
                rec["healed_at"] = t
            open_ = []
    last = rel_end(entry)
    for rec in open_:  # the journal does not say: up to its last record
        rec["healed_at"] = last
    return out, True
