"""Suite results: results.json and a self-contained HTML page, built from test reports.

Scenario runs put their journal in ``user_properties`` (key ``renderchaos``), which xdist
ships to the controller, so this works the same with and without ``-n``.
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROPERTY = "renderchaos"


@dataclass
class Collector:
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)  # nodeid -> entry

    def add(self, nodeid: str, when: str, outcome: str, props: list[tuple[str, Any]], duration: float,
            longrepr: str, crash: str = "") -> None:
        journal = next((json.loads(v) for k, v in props if k == PROPERTY), None)
        scenario = next((v for k, v in props if k == "scenario"), None)
        if journal is None and scenario is None:
            return
        entry = self.entries.setdefault(nodeid, {"nodeid": nodeid, "outcome": "passed", "duration_s": 0.0})
        if journal:
            entry.update(journal)
        elif scenario and "id" not in entry:
            entry["id"] = scenario
        entry["duration_s"] = round(entry["duration_s"] + duration, 3)
        if outcome == "skipped" and when in ("setup", "call"):
            entry["outcome"] = "skipped"
            entry["reason"] = longrepr[-300:]
        elif outcome == "failed":
            entry["outcome"] = "failed" if when == "call" else "error"
            # the exception's own message first (ScenarioFailed: scenario, runbook, expected,
            # observed), whole; then the tail of the traceback for context
            entry["failure"] = (crash[:6000] + "\n---\n" if crash else "") + longrepr[-1500:]

    def write(self, out_dir: Path, header: dict[str, Any]) -> Path | None:
        if not self.entries:
            return None
        out_dir.mkdir(parents=True, exist_ok=True)
        results = sorted(self.entries.values(), key=lambda e: e.get("id", e["nodeid"]))
        doc = {"generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **header,
               "summary": _summary(results), "results": results}
        path = out_dir / "results.json"
        path.write_text(json.dumps(doc, indent=2, ensure_ascii=False))
        (out_dir / "report.html").write_text(render_html(doc))
        return path


def _summary(results: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in results:
        out[r["outcome"]] = out.get(r["outcome"], 0) + 1
    return out


def _fmt(v: Any) -> str:
    if v is None:
        return "<span class=na>not checked</span>"
    return html.escape(f"{v:.2f}" if isinstance(v, float) else str(v))


def render_html(doc: dict[str, Any]) -> str:
    rows = []
    for r in doc["results"]:
        phases = " &rarr; ".join(f"{html.escape(p['name'])} {p['duration'] if p['duration'] is not None else '?'}s"
                                 for p in r.get("phases", []))
        detail = html.escape(r.get("failure") or r.get("reason") or "")
        rows.append(
            f"<tr class={r['outcome']}><td>{html.escape(r.get('id', r['nodeid']))}</td><td>{r['outcome']}</td>"
            f"<td>{html.escape(r.get('runbook', ''))}</td><td>{_fmt(r.get('time_to_detect_s'))}</td>"
            f"<td>{_fmt(r.get('time_to_recover_s'))}</td><td>{_fmt(r.get('accepted'))}</td>"
            f"<td>{_fmt(r.get('lost'))}</td><td>{_fmt(r.get('duplicated'))}</td><td>{_fmt(r.get('orphan_ffmpeg'))}</td>"
            f"<td>{phases}<pre>{detail}</pre></td></tr>")
    summary = ", ".join(f"{n} {k}" for k, n in sorted(doc["summary"].items()))
    meta = " &middot; ".join(html.escape(f"{k}: {doc[k]}") for k in ("profile", "seed", "target", "run_id") if k in doc)
    return f"""<!doctype html><meta charset=utf-8><title>renderchaos report</title>
<style>body{{font:14px system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse;width:100%}}
td,th{{border:1px solid #ccc;padding:4px 6px;vertical-align:top;text-align:left}}
tr.passed td:nth-child(2){{background:#d9f7d9}}tr.failed td:nth-child(2),tr.error td:nth-child(2){{background:#f7d9d9}}
tr.skipped td:nth-child(2){{background:#eee}}.na{{color:#999}}pre{{white-space:pre-wrap;margin:0;font-size:12px}}</style>
<h1>renderchaos: {summary}</h1><p>{meta} &middot; generated {doc['generated_at']}</p>
<table><tr><th>scenario</th><th>outcome</th><th>runbook</th><th>detect s</th><th>recover s</th><th>accepted</th>
<th>lost</th><th>duplicated</th><th>orphan ffmpeg</th><th>journal</th></tr>{''.join(rows)}</table>
"""
