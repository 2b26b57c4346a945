"""report.html: one self-contained page (inline CSS, JS and SVG; nothing fetched), in the order an
SRE asks: did it pass and how do I replay it; what failed, against which runbook section, and
what it looked like; which runbook sections are proven; what got worse since earlier runs; then
every scenario's timeline, the job ledger, the fault audit, the mutation score and load reports.
"""

from __future__ import annotations

import base64
import calendar
import html
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from renderchaos.report.coverage import Row, RunbookCoverage, coverage, normalize
from renderchaos.report.doc import (BAD, OUTCOMES, Doc, Entry, failure_parts, num, runbook_parts, scenario_id,
                                    summary, verdict)
from renderchaos.report.history import Trend, trend
from renderchaos.report.timeline import fmt_s, render_timeline

INLINE_PNG_MAX = 3_000_000


def _e(v: Any) -> str:
    return html.escape("" if v is None else str(v), quote=True)


@dataclass
class ReportInputs:
    """What the page shows besides results.json: earlier runs, mutation.json, load reports."""

    earlier: list[dict[str, Any]] = field(default_factory=list)
    mutation: dict[str, Any] | None = None
    mutation_mtime: float | None = None
    load_links: list[tuple[str, str, float]] = field(default_factory=list)  # label, href, mtime
    load_images: list[tuple[str, str, float]] = field(default_factory=list)  # name, data URI, mtime

    @classmethod
    def gather(cls, out_dir: Path, earlier: list[dict[str, Any]] | None = None) -> "ReportInputs":
        inputs = cls(earlier=list(earlier or []))
        mpath = out_dir / "mutation.json"
        if mpath.is_file():
            try:
                inputs.mutation = json.loads(mpath.read_text())
                inputs.mutation_mtime = mpath.stat().st_mtime
            except (OSError, ValueError):
                inputs.mutation = None
        load = out_dir / "load"
        if load.is_dir():
            for p in sorted(load.iterdir()):
                if not p.is_file():
                    continue
                mtime = p.stat().st_mtime
                if p.suffix == ".png" and p.stat().st_size <= INLINE_PNG_MAX:
                    data = base64.b64encode(p.read_bytes()).decode()
                    inputs.load_images.append((p.name, f"data:image/png;base64,{data}", mtime))
                elif p.suffix in (".html", ".csv", ".png"):
                    inputs.load_links.append((p.name, f"load/{p.name}", mtime))
        return inputs


# ---------------------------------------------------------------------------------------
def render_html(doc: Doc, inputs: ReportInputs | None = None) -> str:
    inputs = inputs or ReportInputs()
    results: list[Entry] = list(doc.get("results", []))
    if "summary" not in doc:
        doc = {**doc, "summary": summary(results)}  # type: ignore[typeddict-item]
    tr = trend(doc, inputs.earlier) if inputs.earlier else None
    books = coverage(doc)
    ids = _Index(results, books)
    bad = sorted((e for e in results if e.get("outcome") in BAD),
                 key=lambda e: OUTCOMES.index(str(e.get("outcome"))) if e.get("outcome") in OUTCOMES else 99)
    parts = [
        _head(doc),
        _header(doc, results, bad),
        _nav(doc, results, bad, books, tr, inputs),
        _failures(bad, ids) if bad else _closest(results, ids),
        _coverage(books, ids),
        _trend(tr, ids),
        _scenarios(results, ids, tr),
        _ledger(results, ids),
        _faults(results, ids),
        _mutation(inputs, ids, results),
        _load(results, ids, inputs, _run_start(doc)),
        f'<footer>renderchaos report · generated {_e(doc.get("generated_at", "?"))} from results.json '
        f'({len(results)} scenarios) · times inside a scenario are seconds since its run began</footer>',
        "</main>", _SCRIPT, "</body></html>",
    ]
    return "".join(parts)


class _Index:
    """Per render: each entry's anchor on the page and the registered sections it covers."""

    def __init__(self, results: list[Entry], books: list[RunbookCoverage]) -> None:
        self.anchors = {id(e): _anchor(e) for e in results}
        self.sections: dict[int, list[Row]] = {}
        for b in books:
            for r in b.rows:
                for e in r.entries:
                    self.sections.setdefault(id(e), []).append(r)

    def __getitem__(self, key: int) -> str:
        return self.anchors[key]


def _anchor(e: Entry) -> str:
    return "s-" + "".join(c if c.isalnum() or c in "-_." else "-" for c in scenario_id(e))


def _badge(outcome: Any) -> str:
    o = str(outcome or "unknown")
    return f'<span class="badge o-{_e(o)}">{_e(o)}</span>'


def _abs(started_at: Any, rel: Any) -> str:
    a, r = num(started_at), num(rel)
    if a is None or r is None:
        return ""
    return time.strftime("%H:%M:%S", time.gmtime(a + r))


def _run_start(doc: Doc) -> float | None:
    starts = [num(e.get("started_at")) for e in doc.get("results", [])]
    starts = [s for s in starts if s is not None]
    if starts:
        return min(starts)
    try:
        end = calendar.timegm(time.strptime(str(doc.get("generated_at")), "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return None
    return end - (num(doc.get("elapsed_s")) or 0.0)


def _duration(s: Any) -> str:
    v = num(s)
    if v is None:
        return "not recorded"
    m, sec = divmod(int(round(v)), 60)
    return f"{m} min {sec} s" if m else f"{v:.1f} s"


def _code(cmd: str, label: str) -> str:
    return (f'<div class=cmd><span class=cmdlabel>{_e(label)}</span><code>{_e(cmd)}</code>'
            f'<button type=button class=copy data-copy="{_e(cmd)}">copy</button></div>')


def _scenario_replay(doc: Doc, e: Entry) -> tuple[str, bool]:
    if e.get("replay"):
        return str(e["replay"]), False
    nodeid = e.get("nodeid")
    if not nodeid:
        return "", False
    cmd = f".venv/bin/pytest '{nodeid}'"
    if doc.get("profile"):
        cmd += f" --chaos-profile {doc['profile']}"
    if doc.get("seed") is not None:
        cmd += f" --chaos-seed {doc['seed']}"
    return cmd, True


# ---------------------------------------------------------------------------------------
def _head(doc: Doc) -> str:
    v = verdict(doc)
    counts = doc.get("summary") or {}
    title = f"{v.upper()} · " + ", ".join(f"{n} {k}" for k, n in counts.items()) + " · renderchaos"
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<meta name=viewport content='width=device-width, initial-scale=1'>"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>")


def _header(doc: Doc, results: list[Entry], bad: list[Entry]) -> str:
    v = verdict(doc)
    counts = doc.get("summary") or {}
    chips = "".join(f'<span class="count o-{_e(k)}"><b>{n}</b> {_e(k)}</span>'
                    for k, n in sorted(counts.items(), key=lambda kv: OUTCOMES.index(kv[0])
                                       if kv[0] in OUTCOMES else 99))
    engine = doc.get("engine") or {}
    eng = " ".join(str(x) for x in (engine.get("name"), engine.get("version")) if x) if isinstance(engine, dict) \
        else str(engine)
    images = doc.get("images") or {}
    imgs = ("".join(f"<li><span class=svc>{_e(k)}</span> <code>{_e(r)}</code></li>" for k, r in sorted(images.items()))
            if isinstance(images, dict) else f"<li><code>{_e(images)}</code></li>")
    target = str(doc.get("target") or "")
    platform = str(doc.get("platform") or "")
    rev = str(doc.get("revision") or "")
    meta = [
        ("profile", _e(doc.get("profile", "not recorded"))),
        ("seed", _e(doc.get("seed", "not recorded"))),
        ("target", _e(target or "not recorded") + (f" · platform <b>{_e(platform)}</b>" if platform else "")),
        ("revision", (f'<code>{_e(rev)}</code>' + (' <span class=warn>uncommitted changes</span>'
                                                    if rev.endswith("+dirty") else "")) if rev else "not recorded"),
        ("engine", _e(eng) if eng else "not recorded"),
        ("duration", _duration(doc.get("elapsed_s"))),
        ("run", _e(doc.get("run_id", "not recorded")) + f' · generated {_e(doc.get("generated_at", "?"))}'),
    ]
    factor = num(doc.get("timeout_factor"))  # type: ignore[misc]
    if factor is not None and factor != 1.0:
        meta.append(("timeouts", f"waits ×{factor:g} (runbook limits unscaled)"))
    if doc.get("broken"):
        meta.append(("planted bugs", "<span class=warn>" + _e(", ".join(doc["broken"])) + "</span>"))
    dl = "".join(f"<dt>{k}</dt><dd>{val}</dd>" for k, val in meta)
    if imgs:
        dl += f"<dt>images</dt><dd><ul class=images>{imgs}</ul></dd>"
    else:
        dl += "<dt>images</dt><dd>not recorded</dd>"
    alerts = []
    if doc.get("interrupted"):
        n = counts.get("interrupted", 0)
        alerts.append(f"The run was <b>interrupted</b>: {n} scenario(s) never finished and are not counted as "
                      "passed. Re-run to get a verdict.")
    active = [(e, int(num(e.get("faults_active_at_end")) or 0)) for e in results]
    active = [(e, n) for e, n in active if n > 0]
    if active:
        alerts.append("<b>Faults still active at the end</b> (the target may need a manual reset): " + ", ".join(
            f'<a href="#{_anchor(e)}">{_e(scenario_id(e))}</a> ({n})' for e, n in active))
    cmds = []
    if doc.get("command"):
        cmds.append(_code(str(doc["command"]), "replay the run"))
    else:
        cmds.append('<div class=cmd><span class=cmdlabel>replay the run</span><span class=muted>command not '
                    f'recorded; use --chaos-seed {_e(doc.get("seed", "?"))} with the same profile</span></div>')
    pick = bad[0] if bad else (results[0] if results else None)
    if pick is not None:
        cmd, guessed = _scenario_replay(doc, pick)
        if cmd:
            cmds.append(_code(cmd, f"replay {scenario_id(pick)}" + (" (rebuilt)" if guessed else "")))
    verdict_text = {"passed": "PASSED", "failed": "FAILED", "interrupted": "INTERRUPTED"}[v]
    return (f'<header id=verdict class="v-{v}"><div class=vline><span class=verdict>{verdict_text}</span>'
            f'<span class=counts>{chips or "<span class=muted>no scenario ran</span>"}</span>'
            f'<span class=dur>{len(results)} scenarios · {_duration(doc.get("elapsed_s"))}</span></div>'
            + "".join(f"<p class=alert>{a}</p>" for a in alerts)
            + f"<dl class=meta>{dl}</dl>{''.join(cmds)}</header>")


def _nav(doc: Doc, results: list[Entry], bad: list[Entry], books: list[RunbookCoverage], tr: Trend | None,
         inputs: ReportInputs) -> str:
    gaps = sum(b.gaps for b in books)
    links = []
    if bad:
        links.append(("failures", f"failures ({len(bad)})"))
    links.append(("coverage", f"runbook coverage ({gaps} gaps)" if any(b.registered for b in books)
                  else "runbook coverage"))
    if tr is not None:
        n = len(tr.new_failures) + len(tr.ttr_regressions) + len(tr.flaky)
        links.append(("trend", f"trend ({n} flagged)"))
    else:
        links.append(("trend", "trend"))
    links += [("scenarios", f"scenarios ({len(results)})"), ("ledger", "job ledger"), ("faults", "fault audit")]
    if inputs.mutation:
        links.append(("mutation", "mutation score"))
    links.append(("load", "load"))
    return ("<nav>" + "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in links)
            + '<span class=navtools><button type=button id=expand-all>expand all</button>'
              '<button type=button id=collapse-all>collapse all</button></span></nav>')


def _runbook_cell(e: Entry, ix: "_Index | None" = None) -> str:
    """Key and section (Chinese, as the runbook has it); with the page index, the English titles of
    the registered sections it covers and the runbook file beside it (given the page index)."""
    key, section = runbook_parts(e)
    if not key and not section:
        return '<span class=muted>no runbook recorded</span>'
    out = f'<span class=rbkey>{_e(key or "?")}</span> <span class=zh>{_e(section or "")}</span>'
    if ix is not None:
        titles = [r.title_en for r in ix.sections.get(id(e), []) if r.title_en]
        if titles:
            out += f' <span class=en>· {_e(" / ".join(dict.fromkeys(titles)))}</span>'
        m = re.search(r"\(([^()]*\.txt)\)\s*$", str(e.get("runbook") or ""))
        if m:
            out += f' <span class=muted>({_e(m.group(1))})</span>'
    return out


def _limit_cell(val: Any, lim: Any) -> str:
    v, lv = num(val), num(lim)
    if v is None:
        return '<span class=na>not measured</span>' + (f'<span class=lim> / {fmt_s(lv)} s</span>' if lv else "")
    cls = "ok" if lv is None or v <= lv else "bad"
    return f'<span class="{cls}-text">{fmt_s(v)} s</span>' + (f'<span class=lim> / {fmt_s(lv)} s</span>'
                                                             if lv is not None else "")


def _failures(bad: list[Entry], ids: "_Index") -> str:
    cards = []
    for e in bad:
        fp = failure_parts(e)
        sid = scenario_id(e)
        rows = [("runbook", _runbook_cell(e, ids))]
        for k in ("expected", "observed"):
            if fp.get(k):
                rows.append((k, f"<pre class={k}>{_e(fp[k])}</pre>"))
        if "expected" not in fp and fp.get("message"):
            rows.append(("message", f"<pre class=observed>{_e(fp['message'])}</pre>"))
        if e.get("outcome") == "interrupted" and not fp.get("message") and not fp.get("observed"):
            rows.append(("observed", "<pre class=observed>the scenario was set up but its run never finished "
                                     "(the session was interrupted)</pre>"))
        n_active = int(num(e.get("faults_active_at_end")) or 0)
        if n_active:
            rows.append(("faults left", f'<span class=bad-text>{n_active} fault(s) still active at the end</span>'))
        table = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
        rest = fp.get("rest")
        cards.append(
            f'<article class="failure o-{_e(e.get("outcome"))}"><h3>{_badge(e.get("outcome"))} '
            f'<a href="#{ids[id(e)]}">{_e(sid)}</a> <span class=title>{_e(e.get("title", ""))}</span></h3>'
            f'<table class=kv>{table}</table>{render_timeline(e, sid)}{_ledger_line(e)}'
            + (_code(e["replay"], "replay") if e.get("replay") else "")
            + (f"<details><summary>traceback tail</summary><pre>{_e(rest)}</pre></details>" if rest else "")
            + "</article>")
    return f'<section id=failures><h2>Failures first</h2>{"".join(cards)}</section>'


def _closeness(e: Entry) -> float:
    """How close a scenario came to its runbook limits (1.0 = right at a limit)."""
    limits = e.get("limits") or {}
    ratios = [v / lim for v, lim in ((num(e.get("time_to_detect_s")), num(limits.get("detect_s"))),
                                     (num(e.get("time_to_recover_s")), num(limits.get("recover_s"))))
              if v is not None and lim]
    return max(ratios, default=0.0)


def _closest(results: list[Entry], ids: "_Index", n: int = 2) -> str:
    """With nothing failed, the scenarios that came closest to a runbook limit lead instead."""
    ranked = sorted((e for e in results if e.get("outcome") == "passed" and _closeness(e) > 0),
                    key=_closeness, reverse=True)[:n]
    if not ranked:
        return ""
    cards = []
    for e in ranked:
        sid = scenario_id(e)
        limits = e.get("limits") or {}
        cards.append(
            f'<article class=closest><h3>{_badge(e.get("outcome"))} <a href="#{ids[id(e)]}">{_e(sid)}</a> '
            f'<span class=title>{_e(e.get("title", ""))}</span> <span class=stats>{_closeness(e):.0%} of a limit'
            f'</span></h3><p>{_runbook_cell(e, ids)} · detect {_limit_cell(e.get("time_to_detect_s"), limits.get("detect_s"))}'
            f' · recover {_limit_cell(e.get("time_to_recover_s"), limits.get("recover_s"))}</p>'
            f'{render_timeline(e, sid)}</article>')
    return ('<section id=closest><h2>Nothing failed: closest to a runbook limit</h2>'
            + "".join(cards) + "</section>")


def _coverage(books: list[RunbookCoverage], ids: "_Index") -> str:
    if not books:
        return "<section id=coverage><h2>Runbook coverage</h2><p class=muted>no scenario ran</p></section>"
    out = ["<section id=coverage><h2>Runbook coverage</h2>"]
    if not any(b.registered for b in books):
        out.append("<p class=muted>No runbooks are registered in this results.json: sections come from the "
                   "scenarios alone, so gaps cannot be shown.</p>")
    for b in books:
        covered = sum(1 for r in b.rows if not r.gap)
        head = f"<span class=rbkey>{_e(b.key)}</span> {_e(b.title)}" + (f" <span class=en>· {_e(b.title_en)}</span>"
                                                                         if b.title_en else "")
        if b.file:
            head += f" <span class=muted>{_e(b.file)}</span>"
        stats = (f"{covered}/{len(b.rows)} sections covered" + (f", <b class=bad-text>{b.gaps} gaps</b>"
                                                                 if b.gaps else "")) if b.rows else ""
        if not b.registered:
            stats = "<span class=muted>not a registered runbook</span>"
        rows = []
        for r in b.rows:
            cls = "gap" if r.gap else "via" if not r.entries else ""
            cells = _chips(r.entries, ids) if r.entries else (
                '<span class=gaptext>gap: no scenario</span>' if r.gap else
                '<span class=muted>covered through its subsections</span>')
            rows.append(f'<tr class="{cls}"><td class="sec d{min(r.depth, 3)}">{_section_label(r)}</td>'
                        f'<td class=en>{_e(r.title_en)}</td><td>{cells}</td></tr>')
        for label, group in b.unmatched:
            rows.append(f'<tr class="{"unmatched" if b.registered else ""}"><td class=sec><span class=zh>{_e(label)}</span>'
                        f'</td><td class=en><span class=muted>{"not a registered section" if b.registered else ""}'
                        f'</span></td><td>{_chips(group, ids)}</td></tr>')
        out.append(f'<h3>{head} <span class=stats>{stats}</span></h3><table class=matrix><colgroup><col class=c1><col class=c2><col></colgroup><thead><tr>'
                   f'<th>section (as the runbook has it)</th><th>section (English)</th><th>scenarios · outcome · what they prove'
                   f'</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')
    out.append("</section>")
    return "".join(out)


def _section_label(r: Row) -> str:
    """The section's id in bold and its title, without repeating a title the id already spells out."""
    nid, ntitle = normalize(r.id), normalize(r.title)
    if not ntitle or nid.endswith(ntitle):
        return f"<b>{_e(r.id)}</b>"
    return f"<b>{_e(r.id)}</b> {_e(r.title)}"


def _chips(entries: Iterable[Entry], ids: "_Index") -> str:
    return "".join(f'<div class=cov><a class="chip o-{_e(e.get("outcome"))}" href="#{ids[id(e)]}" '
                   f'title="{_e(e.get("outcome"))}">{_e(scenario_id(e))}</a> <span class=en>{_e(e.get("title", ""))}'
                   f'</span></div>' for e in entries)


def _strip(outcomes: list[str]) -> str:
    return '<span class=strip>' + "".join(f'<i class="o-{_e(o)}" title="{_e(o)}"></i>' for o in outcomes) + "</span>"


def _trend(tr: Trend | None, ids: "_Index") -> str:
    if tr is None:
        return ("<section id=trend><h2>Trend</h2><p class=muted>No earlier run in reports/history/: this run "
                "is the first one recorded, nothing to compare.</p></section>")
    if not tr.runs:
        return (f"<section id=trend><h2>Trend</h2><p class=muted>{tr.skipped_runs} earlier run(s) in "
                "reports/history/, none of the same platform and planted bugs: nothing to compare.</p></section>")
    runs = tr.runs[-50:] + [{**tr.current, "now": True}]
    bars = []
    w = 14
    for i, r in enumerate(runs):
        s = r.get("summary") or {}
        total = sum(s.values()) or 1
        bad = sum(s.get(k, 0) for k in ("failed", "error", "interrupted"))
        h_bad = round(40 * bad / total, 1)
        x = i * w
        tip = (f'{"this run: " if r.get("now") else ""}{r.get("generated_at", "?")} {r.get("run_id", "")}: '
               + ", ".join(f"{n} {k}" for k, n in s.items()))
        bars.append(f'<g{" class=now" if r.get("now") else ""}><title>{_e(tip)}</title><rect class=tpass x={x} y=0 width={w - 3} height={40 - h_bad}>'
                    f'</rect><rect class=tfail x={x} y={40 - h_bad} width={w - 3} height={h_bad}></rect></g>')
    chart = (f'<svg class=runs width={len(runs) * w} height=40 viewBox="0 0 {len(runs) * w} 40" '
             f'xmlns="http://www.w3.org/2000/svg">{"".join(bars)}</svg>')
    out = [f"<section id=trend><h2>Trend</h2><p>Against {len(tr.runs)} earlier run(s) of the same platform "
           f"and planted bugs" + (f" ({tr.skipped_runs} other runs not compared)" if tr.skipped_runs else "")
           + f". Runs oldest first, this one last (outlined); red: the share failed, error or interrupted:</p>{chart}"]

    def block(title: str, items: list[Any], row: Any, empty: str) -> None:
        body = "".join(row(s) for s in items) if items else f"<li class=muted>{empty}</li>"
        out.append(f"<h3>{title}</h3><ul class=flags>{body}</ul>")

    def link(sid: str) -> str:
        return f'<a href="#s-{_e("".join(c if c.isalnum() or c in "-_." else "-" for c in sid))}">{_e(sid)}</a>'

    block("New failures", tr.new_failures,
          lambda s: f"<li>{link(s.id)} {_strip(s.outcomes)} failed now, passed the last time it ran</li>",
          "none")
    block("Time-to-recover regressions (≥ 2× the median of earlier runs)", tr.ttr_regressions,
          lambda s: f"<li>{link(s.id)} recovered in <b class=bad-text>{fmt_s(s.ttr)} s</b>, median of "
                    f"{s.ttr_runs} earlier run(s) {fmt_s(s.ttr_median)} s "
                    f"(×{(s.ttr or 0) / (s.ttr_median or 1):.1f})</li>", "none")
    block("Flaky (outcome flipped at least twice lately)", tr.flaky,
          lambda s: f"<li>{link(s.id)} {_strip(s.outcomes)} {s.flips} flips</li>", "none")
    block("Fixed since the last run", tr.fixed,
          lambda s: f"<li>{link(s.id)} {_strip(s.outcomes)}</li>", "none")
    out.append("</section>")
    return "".join(out)


def _ledger_vals(e: Entry) -> dict[str, Any]:
    led = dict(e.get("ledger") or {})
    for k in ("accepted", "lost", "stuck", "duplicated"):
        led.setdefault(k, e.get(k))
    if "completed" not in led and "recovered" in e:
        led["completed"] = e.get("recovered")
    for k in ("credit_errors", "output_errors", "orphan_ffmpeg", "health_ok", "canary_ok"):
        led[k] = e.get(k)
    return led


_LEDGER_COLS = [("accepted", "accepted", False), ("completed", "completed", False), ("failed", "failed", False),
                ("timeout", "timeout", False), ("cancelled", "cancelled", False), ("lost", "lost", True),
                ("stuck", "stuck", True), ("duplicated", "duplicated", True),
                ("credits_checked", "credits checked", False), ("credit_errors", "credit errors", True),
                ("output_errors", "output errors", True), ("orphan_ffmpeg", "orphan ffmpeg", True),
                ("health_ok", "health", False), ("canary_ok", "canary", False)]


def _cell(v: Any, bad_if_nonzero: bool) -> str:
    if v is None:
        return "<td class=na title='not checked on this target'>n/c</td>"
    if isinstance(v, bool):
        return f"<td class={'ok' if v else 'bad'}>{'ok' if v else 'FAIL'}</td>"
    if bad_if_nonzero and num(v):
        return f"<td class=bad>{_e(v)}</td>"
    return f"<td>{_e(v)}</td>"


def _ledger_line(e: Entry) -> str:
    led = _ledger_vals(e)
    cells = "".join(f"<th>{label}</th>" for _, label, _ in _LEDGER_COLS)
    vals = "".join(_cell(led.get(k), b) for k, _, b in _LEDGER_COLS)
    return f"<table class=ledger><tr>{cells}</tr><tr>{vals}</tr></table>"


def _ledger(results: list[Entry], ids: "_Index") -> str:
    if not results:
        return ""
    totals: dict[str, float] = {}
    rows = []
    for e in results:
        led = _ledger_vals(e)
        for k, _, _ in _LEDGER_COLS:
            v = led.get(k)
            if num(v) is not None:
                totals[k] = totals.get(k, 0) + float(v)
        rows.append(f'<tr><td><a href="#{ids[id(e)]}">{_e(scenario_id(e))}</a></td>'
                    + "".join(_cell(led.get(k), b) for k, _, b in _LEDGER_COLS) + "</tr>")
    head = "".join(f"<th>{label}</th>" for _, label, _ in _LEDGER_COLS)
    total = "".join(_cell(int(totals[k]) if k in totals else None, b) for k, _, b in _LEDGER_COLS)
    return ("<section id=ledger><h2>Job ledger</h2><p class=muted>Every job the scenarios submitted, audited after "
            "the remedy: n/c = not checked on this target. Red: a broken invariant.</p>"
            f"<div class=scroll><table class=grid><thead><tr><th>scenario</th>{head}</tr></thead><tbody>"
            f"<tr class=total><td>all scenarios</td>{total}</tr>{''.join(rows)}</tbody></table></div></section>")


def _fault_rows(e: Entry) -> list[str]:
    rows = []
    start = e.get("started_at")
    for f in e.get("faults") or []:
        a, h = num(f.get("injected_at")), num(f.get("healed_at"))
        held = fmt_s(h - a) + " s" if a is not None and h is not None else ""
        healed = (f'+{fmt_s(h)} s <span class=muted>{_abs(start, h)}</span>' if h is not None
                  else "<b class=bad-text>never healed</b>")
        err = f'<span class=bad-text>{_e(f.get("heal_error"))}</span>' if f.get("heal_error") else ""
        cls = "open" if h is None or f.get("heal_error") else ""
        rows.append(f'<tr class="{cls}"><td>{_e(f.get("description", "?"))}</td><td>+{fmt_s(a)} s '
                    f'<span class=muted>{_abs(start, a)}</span></td><td>{healed}</td><td>{held}</td><td>{err}</td></tr>')
    return rows


def _faults(results: list[Entry], ids: "_Index") -> str:
    recorded = [e for e in results if "faults" in e]
    out = ["<section id=faults><h2>Fault audit</h2>"]
    if not recorded:
        out.append("<p class=muted>No fault audit in this results.json (an older run): see each scenario's "
                   "inject phases.</p></section>")
        return "".join(out)
    active = [e for e in results if int(num(e.get("faults_active_at_end")) or 0) > 0]
    n_faults = sum(len(e.get("faults") or []) for e in recorded)
    n_open = sum(1 for e in recorded for f in e.get("faults") or [] if f.get("healed_at") is None or f.get("heal_error"))
    out.append(f"<p>{n_faults} fault(s) injected by {sum(1 for e in recorded if e.get('faults'))} scenario(s); "
               + (f"<b class=bad-text>{n_open} not healed cleanly</b>" if n_open else "every one healed")
               + (f"; <b class=bad-text>still active at the end: "
                  + ", ".join(f'<a href="#{ids[id(e)]}">{_e(scenario_id(e))}</a> '
                              f'({int(num(e.get("faults_active_at_end")) or 0)})' for e in active) + "</b>"
                  if active else "; none active at the end")
               + ". Times: since the scenario began, and UTC wall clock.</p>")
    rows = []
    for e in recorded:
        fr = _fault_rows(e)
        if fr:
            rows.append(f'<tr class=group><td colspan=5><a href="#{ids[id(e)]}">{_e(scenario_id(e))}</a> '
                        f'{_badge(e.get("outcome"))}</td></tr>' + "".join(fr))
    out.append("<div class=scroll><table class=grid><thead><tr><th>fault</th><th>injected</th><th>healed</th>"
               f"<th>held</th><th>heal error</th></tr></thead><tbody>{''.join(rows)}</tbody></table></div></section>")
    return "".join(out)


def _scenarios(results: list[Entry], ids: "_Index", tr: Trend | None) -> str:
    options = "".join(f"<option value={o}>{o}</option>" for o in OUTCOMES if any(e.get("outcome") == o for e in results))
    rows, details = [], []
    for e in results:
        sid = scenario_id(e)
        limits = e.get("limits") or {}
        n_f = len(e.get("faults") or [])
        st = tr.scenarios.get(sid) if tr else None
        flags = ""
        if st is not None:
            flags = _strip(st.outcomes) + "".join(
                f' <span class="flag {c}">{t}</span>' for c, t, on in (
                    ("bad", "new failure", st.new_failure), ("bad", "TTR ×2", st.ttr_regression),
                    ("warn", "flaky", st.flaky), ("ok", "fixed", st.fixed)) if on)
        rows.append(f'<tr data-outcome="{_e(e.get("outcome"))}"><td>{_badge(e.get("outcome"))}</td>'
                    f'<td><a href="#{ids[id(e)]}">{_e(sid)}</a><div class="en small">{_e(e.get("title", ""))}</div></td>'
                    f'<td>{_runbook_cell(e)}</td>'
                    f'<td class=lim>{_limit_cell(e.get("time_to_detect_s"), limits.get("detect_s"))}</td>'
                    f'<td class=lim>{_limit_cell(e.get("time_to_recover_s"), limits.get("recover_s"))}</td>'
                    f'<td>{n_f if "faults" in e else ""}</td><td>{flags}</td>'
                    f'<td class=num>{fmt_s(num(e.get("duration_s")))} s</td></tr>')
        details.append(_scenario_detail(e, ids[id(e)], sid, ids))
    return ("<section id=scenarios><h2>Scenarios</h2>"
            f"<p class=filter>show <select id=outcome-filter><option value=''>all outcomes</option>{options}</select></p>"
            "<div class=scroll><table class='grid overview'><thead><tr><th>outcome</th><th>scenario</th>"
            "<th>runbook section</th><th>detect / limit</th><th>recover / limit</th><th>faults</th><th>history</th>"
            f"<th>duration</th></tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
            f"{''.join(details)}</section>")


def _scenario_detail(e: Entry, anchor: str, sid: str, ix: "_Index") -> str:
    outcome = str(e.get("outcome"))
    limits = e.get("limits") or {}
    body = [f'<p>{_runbook_cell(e, ix)}'
            + f' · started {_e(time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(e["started_at"])))}'
            if num(e.get("started_at")) is not None else f'<p>{_runbook_cell(e, ix)}']
    body[0] += (f' · detect {_limit_cell(e.get("time_to_detect_s"), limits.get("detect_s"))}'
                f' · recover {_limit_cell(e.get("time_to_recover_s"), limits.get("recover_s"))}</p>')
    if e.get("failure"):
        fp = failure_parts(e)
        if fp.get("expected") or fp.get("observed"):
            body.append("<table class=kv>" + "".join(f"<tr><th>{k}</th><td><pre class={k}>{_e(fp[k])}</pre></td></tr>"
                                                     for k in ("expected", "observed") if fp.get(k)) + "</table>")
        else:
            body.append(f"<pre class=observed>{_e(fp.get('message', ''))}</pre>")
    if e.get("reason"):
        body.append(f"<p class=muted>reason: {_e(e['reason'])}</p>")
    body.append(render_timeline(e, sid))
    body.append(_ledger_line(e))
    fr = _fault_rows(e)
    if fr:
        body.append("<table class='grid faults'><thead><tr><th>fault</th><th>injected</th><th>healed</th><th>held</th>"
                    f"<th>heal error</th></tr></thead><tbody>{''.join(fr)}</tbody></table>")
    phases = e.get("phases") or []
    if phases:
        body.append("<details><summary>phase journal</summary><table class='grid phases'><thead><tr><th>phase</th>"
                    "<th>start</th><th>end</th><th>duration</th><th>ok</th><th>note</th></tr></thead><tbody>"
                    + "".join(f"<tr><td>{_e(p.get('name'))}</td><td>+{fmt_s(num(p.get('started')))}</td>"
                              f"<td>{'+' + fmt_s(num(p.get('ended'))) if num(p.get('ended')) is not None else 'never'}"
                              f"</td><td>{fmt_s(num(p.get('duration')))}</td>"
                              f"<td class={'ok' if p.get('ok') else 'bad' if p.get('ok') is False else 'na'}>"
                              f"{'ok' if p.get('ok') else 'failed' if p.get('ok') is False else '?'}</td>"
                              f"<td>{_e(p.get('note', ''))}</td></tr>" for p in phases)
                    + "</tbody></table></details>")
    if e.get("notes"):
        body.append("<details><summary>notes</summary><ul class=notes>"
                    + "".join(f"<li>{_e(n)}</li>" for n in e["notes"]) + "</ul></details>")
    if e.get("extra"):
        body.append("<details><summary>scenario figures (extra)</summary><pre>"
                    + _e(json.dumps(e["extra"], indent=1, ensure_ascii=False, default=str)[:20000]) + "</pre></details>")
    if e.get("replay"):
        body.append(_code(str(e["replay"]), "replay"))
    opened = " open" if outcome in BAD else ""
    return (f'<details class="scenario o-{_e(outcome)}" id="{anchor}"{opened}><summary>{_badge(outcome)} '
            f'<b>{_e(sid)}</b> <span class=en>{_e(e.get("title", ""))}</span></summary>'
            f'<div class=body>{"".join(body)}</div></details>')


def _mutation(inputs: ReportInputs, ids: "_Index", results: list[Entry]) -> str:
    m = inputs.mutation
    if not m:
        return ""
    score = num(m.get("score"))
    by_id = {scenario_id(e): ids[id(e)] for e in results}

    def sc(s: str) -> str:
        sid = s.split(":")[0]
        return f'<a href="#{by_id[sid]}">{_e(s)}</a>' if sid in by_id else _e(s)

    rows = []
    for variant, v in sorted((m.get("per_variant") or {}).items()):
        caught = v.get("caught_by") or []
        rows.append(f'<tr class="{"" if caught else "gap"}"><td><code>{_e(variant)}</code></td>'
                    f'<td>{_e(v.get("description", ""))}</td>'
                    f'<td>{", ".join(sc(s) for s in caught) or "<b class=bad-text>not caught</b>"}</td>'
                    f'<td>{", ".join(sc(s) for s in v.get("missed_by") or [])}</td>'
                    f'<td>{", ".join(sc(s) for s in v.get("not_run") or [])}</td></tr>')
    for variant in m.get("unclaimed_variants") or []:
        rows.append(f'<tr class=gap><td><code>{_e(variant)}</code></td><td colspan=4><b class=bad-text>no scenario '
                    'claims to catch it</b></td></tr>')
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(inputs.mutation_mtime)) if inputs.mutation_mtime else "?"
    return (f"<section id=mutation><h2>Mutation score</h2><p class=big>"
            f"{'—' if score is None else f'{score:.0%}'}</p><p>{_e(m.get('caught', '?'))} of {_e(m.get('variants', '?'))} "
            f"planted bugs caught ({_e(m.get('measured', '?'))} measured) · mutation run {_e(m.get('run_id', '?'))}, "
            f"written {when} (by tests/meta, not by this run)</p><div class=scroll><table class=grid><thead><tr>"
            "<th>variant</th><th>planted bug</th><th>caught by</th><th>missed by</th><th>not run</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div></section>")


def _load(results: list[Entry], ids: "_Index", inputs: ReportInputs, run_start: float | None) -> str:
    load_entries = [e for e in results if scenario_id(e).startswith("load.") or (e.get("extra") or {}).get("load")]
    if not load_entries and not inputs.load_links and not inputs.load_images:
        return "<section id=load><h2>Load</h2><p class=muted>No load scenario in this run.</p></section>"
    out = ["<section id=load><h2>Load</h2>"]

    def stale(mtime: float) -> str:
        if run_start is not None and mtime < run_start - 5:
            return (" <span class=warn>from an earlier run, written "
                    + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(mtime)) + "</span>")
        return ""

    for e in load_entries:
        load = (e.get("extra") or {}).get("load")
        out.append(f'<h3>{_badge(e.get("outcome"))} <a href="#{ids[id(e)]}">{_e(scenario_id(e))}</a></h3>')
        if isinstance(load, dict):
            out.append("<table class=kv>" + "".join(
                f"<tr><th>{_e(k)}</th><td>{_e(json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v)}"
                "</td></tr>" for k, v in load.items()) + "</table>")
    for name, uri, mtime in inputs.load_images:
        out.append(f'<figure><img alt="{_e(name)}" src="{uri}"><figcaption>load/{_e(name)}{stale(mtime)}'
                   "</figcaption></figure>")
    if inputs.load_links:
        out.append("<ul class=files>" + "".join(f'<li><a href="{_e(href)}">{_e(label)}</a>{stale(mtime)}</li>'
                                                 for label, href, mtime in inputs.load_links) + "</ul>")
    out.append("</section>")
    return "".join(out)


_CSS = """
:root{--fg:#1f2328;--muted:#656d76;--line:#d0d7de;--bg2:#f6f8fa;--pass:#1a7f37;--fail:#cf222e;--err:#bc4c00;
--skip:#8c959f;--intr:#9a6700;--xf:#8250df;--xp:#bf8700;--fault:#cf222e}
*{box-sizing:border-box}
body{margin:0;color:var(--fg);background:#fff;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,
"Noto Sans","Noto Sans CJK SC","WenQuanYi Micro Hei","Microsoft YaHei",sans-serif}
main{max-width:1240px;margin:0 auto;padding:0 20px 40px}
h2{font-size:20px;margin:28px 0 10px;padding-bottom:4px;border-bottom:1px solid var(--line)}
h3{font-size:15px;margin:16px 0 6px}
a{color:#0969da;text-decoration:none}a:hover{text-decoration:underline}
code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre{white-space:pre-wrap;word-break:break-word;margin:0}
.muted,.na{color:var(--muted)}.small{font-size:12px}
.ok-text{color:var(--pass);font-weight:600}.bad-text{color:var(--fail);font-weight:600}
.warn{color:var(--intr);font-weight:600}.lim{color:var(--muted)}
header#verdict{margin:0 -20px;padding:18px 20px 14px;border-bottom:4px solid var(--pass);background:#f0fff4}
header.v-failed{border-color:var(--fail)!important;background:#fff5f5!important}
header.v-interrupted{border-color:var(--intr)!important;background:#fff8e5!important}
.vline{display:flex;align-items:center;gap:16px;flex-wrap:wrap}
.verdict{font-size:28px;font-weight:800;letter-spacing:.04em}
.v-passed .verdict{color:var(--pass)}.v-failed .verdict{color:var(--fail)}.v-interrupted .verdict{color:var(--intr)}
.count{display:inline-block;margin-right:6px;padding:2px 10px;border-radius:12px;background:#fff;border:1px solid var(--line)}
.count b{font-size:16px}.dur{color:var(--muted);margin-left:auto}
.alert{margin:8px 0;padding:6px 10px;border-left:4px solid var(--fail);background:#fff}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:10px 0}
dl.meta dt{color:var(--muted)}dl.meta dd{margin:0}
ul.images{margin:0;padding:0;list-style:none;columns:2}ul.images .svc{color:var(--muted);display:inline-block;min-width:70px}
.cmd{display:flex;align-items:center;gap:8px;margin:4px 0}.cmdlabel{color:var(--muted);min-width:150px}
.cmd code{background:#fff;border:1px solid var(--line);border-radius:4px;padding:3px 6px;overflow-x:auto;
white-space:nowrap;max-width:900px}
button{font:12px system-ui,sans-serif;border:1px solid var(--line);background:#fff;border-radius:4px;padding:2px 8px;
cursor:pointer}button:hover{background:var(--bg2)}
nav{position:sticky;top:0;z-index:2;background:rgba(255,255,255,.96);border-bottom:1px solid var(--line);
margin:0 -20px;padding:6px 20px;display:flex;gap:14px;flex-wrap:wrap;align-items:center}
.navtools{margin-left:auto;display:flex;gap:6px}
.badge{display:inline-block;min-width:74px;text-align:center;padding:1px 6px;border-radius:10px;color:#fff;font-size:12px;
font-weight:600;background:var(--skip)}
.badge.o-passed{background:var(--pass)}.badge.o-failed{background:var(--fail)}.badge.o-error{background:var(--err)}
.badge.o-interrupted{background:var(--intr)}.badge.o-xfailed{background:var(--xf)}.badge.o-xpassed{background:var(--xp)}
.count.o-failed,.count.o-error{border-color:var(--fail);color:var(--fail)}.count.o-passed{border-color:var(--pass);color:var(--pass)}
.count.o-interrupted{border-color:var(--intr);color:var(--intr)}
article.failure{border:1px solid var(--line);border-left:5px solid var(--fail);border-radius:6px;padding:8px 14px;
margin:12px 0;background:#fff}
article.failure.o-interrupted{border-left-color:var(--intr)}article.failure.o-error{border-left-color:var(--err)}
article.failure h3{margin:4px 0 8px}
article.closest{border:1px solid var(--line);border-left:5px solid var(--pass);border-radius:6px;padding:6px 14px;margin:10px 0}.title{font-weight:400}
table{border-collapse:collapse}
table.kv{margin:6px 0;width:100%}table.kv th{text-align:left;vertical-align:top;color:var(--muted);font-weight:500;
width:90px;padding:3px 8px 3px 0}table.kv td{padding:3px 0}
pre.expected{color:#0a3069}pre.observed{color:#82071e;background:#fff5f5;padding:4px 6px;border-radius:4px}
table.grid{width:100%;font-size:13px}table.grid th,table.grid td{border-bottom:1px solid var(--line);padding:4px 6px;
text-align:left;vertical-align:top}table.grid thead th{background:var(--bg2);position:sticky;top:0}
table.grid td.num,table.grid td.lim{text-align:right;white-space:nowrap}
tr.total td{font-weight:700;background:var(--bg2)}tr.group td{background:var(--bg2);font-weight:600}
td.bad{background:#ffebe9;color:var(--fail);font-weight:700}td.ok{color:var(--pass)}td.na{color:var(--skip)}
tr.open td{background:#fff5f5}
.scroll{overflow-x:auto}
table.matrix{width:100%;margin-bottom:8px;table-layout:fixed}table.matrix col.c1{width:330px}table.matrix col.c2{width:230px}table.matrix th,table.matrix td{border-bottom:1px solid var(--line);
padding:4px 8px;text-align:left;vertical-align:top}table.matrix thead th{background:var(--bg2);font-weight:600}
table.matrix td.sec{font-weight:500}table.matrix td.sec b{font-weight:700;margin-right:4px}td.d1{padding-left:22px!important}td.d2{padding-left:36px!important}
td.d3{padding-left:50px!important}
table.matrix td.zh{font-size:14px}table.matrix td.en{color:var(--muted);font-size:12.5px}
tr.gap td{background:repeating-linear-gradient(135deg,#fff,#fff 6px,#fff1f0 6px,#fff1f0 12px)}
.gaptext{color:var(--fail);font-weight:600}tr.unmatched td{background:#fffbea}
.stats{font-weight:400;color:var(--muted);font-size:13px;margin-left:8px}.rbkey{display:inline-block;min-width:18px;
text-align:center;font-weight:700;background:var(--fg);color:#fff;border-radius:3px;padding:0 4px;font-size:12px}
.cov{margin:1px 0}.chip{display:inline-block;padding:0 7px;border-radius:9px;color:#fff;font-size:12px;font-weight:600;
background:var(--skip)}.chip:hover{text-decoration:none;filter:brightness(1.1)}
.chip.o-passed{background:var(--pass)}.chip.o-failed{background:var(--fail)}.chip.o-error{background:var(--err)}
.chip.o-interrupted{background:var(--intr)}.chip.o-xfailed{background:var(--xf)}.chip.o-xpassed{background:var(--xp)}
.cov .en{color:var(--muted);font-size:12.5px}
.strip{display:inline-flex;gap:1px;vertical-align:middle}.strip i{display:inline-block;width:7px;height:14px;
background:var(--skip);border-radius:1px}.strip i.o-passed,.strip i.o-xfailed{background:var(--pass)}
.strip i.o-failed,.strip i.o-error{background:var(--fail)}.strip i.o-interrupted{background:var(--intr)}
.flag{font-size:11px;font-weight:700;padding:0 5px;border-radius:3px;border:1px solid}
.flag.bad{color:var(--fail);border-color:var(--fail)}.flag.warn{color:var(--intr);border-color:var(--intr)}
.flag.ok{color:var(--pass);border-color:var(--pass)}
ul.flags{margin:4px 0 10px;padding-left:20px}ul.flags li{margin:2px 0}
svg.runs .tpass{fill:#7ee2a8}svg.runs .tfail{fill:var(--fail)}svg.runs .now rect{stroke:var(--fg);stroke-width:1.5}
details.scenario{border:1px solid var(--line);border-radius:6px;margin:8px 0;background:#fff}
details.scenario>summary{padding:6px 10px;cursor:pointer;background:var(--bg2);border-radius:6px}
details.scenario[open]>summary{border-bottom:1px solid var(--line);border-radius:6px 6px 0 0}
details.scenario .body{padding:6px 12px 10px}details.scenario .en{color:var(--muted)}
details>summary{cursor:pointer}
table.ledger{font-size:12px;margin:6px 0}table.ledger th{font-weight:500;color:var(--muted);padding:1px 7px;
border-bottom:1px solid var(--line);white-space:nowrap}table.ledger td{text-align:center;padding:1px 7px}
svg.timeline{display:block;width:100%;max-width:1200px;height:auto;margin:8px 0;font:11px system-ui,sans-serif;background:#fff}
svg.timeline .grid{stroke:#eaeef2;stroke-width:1}svg.timeline .tick{fill:var(--muted);font-size:10px}
svg.timeline .lane{fill:var(--fg);font-size:11px}svg.timeline .muted{fill:var(--muted);font-style:italic}
svg.timeline .fault-window{fill:var(--fault);fill-opacity:.10;stroke:var(--fault);stroke-opacity:.35;stroke-dasharray:3 2}
svg.timeline .fault-open{fill-opacity:.22;stroke-opacity:.8}
svg.timeline .fault-bar{fill:#ff8182}svg.timeline .fault-bar.open{fill:var(--fail)}
svg.timeline .phase.ok{fill:#54aeff}svg.timeline .phase.bad{fill:var(--fail)}
svg.timeline .phase.open{fill:var(--intr);fill-opacity:.6}svg.timeline .phase.unknown{fill:var(--skip)}
svg.timeline .barlabel{fill:#fff;font-size:10.5px;pointer-events:none}
svg.timeline .ttx.ok{fill:var(--pass)}svg.timeline .ttx.bad{fill:var(--fail)}
svg.timeline .ok-text{fill:var(--pass);font-weight:600}svg.timeline .bad-text{fill:var(--fail);font-weight:700}
svg.timeline .limit{stroke:var(--fg);stroke-width:2;stroke-dasharray:3 2}
svg.timeline .chartbg{fill:none;stroke:#d8dee4}
svg.timeline polyline{fill:none;stroke-width:1.4}svg.timeline circle.dot{stroke-width:2;fill:#fff}svg.timeline .lat{stroke:#0969da}svg.timeline .queue{stroke:#8250df}
svg.timeline circle.s5{fill:var(--err)}svg.timeline circle.s4{fill:var(--xp)}svg.timeline circle.noans{fill:var(--fail)}
svg.timeline .legend{fill:var(--muted);font-size:10.5px}
.job-pending,.job-queued{stroke:#bf8700}.job-running{stroke:#0969da}.job-completed{stroke:var(--pass)}
.job-failed{stroke:var(--fail)}.job-timeout{stroke:var(--err)}.job-cancelled,.job-other{stroke:var(--skip)}
.job-pending-text,.job-queued-text{fill:#bf8700}.job-running-text{fill:#0969da}.job-completed-text{fill:var(--pass)}
.job-failed-text{fill:var(--fail)}.job-timeout-text{fill:var(--err)}.job-cancelled-text,.job-other-text{fill:var(--skip)}
p.big{font-size:34px;font-weight:800;margin:4px 0}
figure{margin:10px 0}figure img{max-width:100%;border:1px solid var(--line)}figcaption{color:var(--muted);font-size:12px}
footer{margin-top:30px;color:var(--muted);font-size:12px}
.filter{margin:4px 0 8px}
@media print{nav{display:none}details{display:block}}
"""

_SCRIPT = """<script>
(function(){
  function each(sel, fn){ Array.prototype.forEach.call(document.querySelectorAll(sel), fn); }
  each('button.copy', function(b){
    b.addEventListener('click', function(){
      var text = b.getAttribute('data-copy') || '';
      function done(){ b.textContent = 'copied'; setTimeout(function(){ b.textContent = 'copy'; }, 1200); }
      function fallback(){
        var r = document.createRange(); var code = b.parentNode.querySelector('code');
        if (!code) return; r.selectNodeContents(code);
        var s = window.getSelection(); s.removeAllRanges(); s.addRange(r); b.textContent = 'selected';
      }
      try {
        if (navigator.clipboard && window.isSecureContext) { navigator.clipboard.writeText(text).then(done, fallback); }
        else { fallback(); }
      } catch (e) { fallback(); }
    });
  });
  function openAll(v){ each('details', function(d){ d.open = v; }); }
  var ea = document.getElementById('expand-all'), ca = document.getElementById('collapse-all');
  if (ea) ea.addEventListener('click', function(){ openAll(true); });
  if (ca) ca.addEventListener('click', function(){ openAll(false); });
  var f = document.getElementById('outcome-filter');
  if (f) f.addEventListener('change', function(){
    var v = f.value;
    each('table.overview tbody tr', function(tr){ tr.style.display = (!v || tr.getAttribute('data-outcome') === v) ? '' : 'none'; });
    each('details.scenario', function(d){ d.style.display = (!v || d.classList.contains('o-' + v)) ? '' : 'none'; });
  });
  function reveal(){
    var id = decodeURIComponent((location.hash || '').slice(1)); if (!id) return;
    var el = document.getElementById(id); if (el && el.tagName === 'DETAILS') el.open = true;
  }
  window.addEventListener('hashchange', reveal); reveal();
})();
</script>"""
