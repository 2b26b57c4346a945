"""One scenario's timeline as hand-written inline SVG (no matplotlib: 50 of these in well under a
second).

On one time axis (seconds since the scenario run began): each fault's injected-to-healed window
shaded across the whole figure (hatched red to the end when it was never healed), the phases as
bars (one lane per phase name), time to detect and time to recover as bars against the runbook
limits, then what the probes saw: request latency (coloured by status), job states and queue
depth. Colours come from the page's stylesheet (classes), so the SVG stays small.
"""

from __future__ import annotations

import html
import math
from typing import Any, Sequence

from renderchaos.report.doc import Entry, fault_windows, num, rel_end

W = 960
LABEL = 136
RIGHT = 18
PW = W - LABEL - RIGHT
AXIS = 22
LANE = 18
GAP = 5
CHART = 70
MAX_POINTS = 500
MAX_FAULT_ROWS = 4
TTD_LANE = "time to detect"
TTR_LANE = "time to recover"
JOB_STATES = ("pending", "queued", "running", "completed", "failed", "timeout", "cancelled")


def _esc(s: Any) -> str:
    return html.escape(str(s), quote=True)


def fmt_s(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}" if abs(v) >= 1 else f"{v:.2f}"


def _step(span: float, n: int = 8) -> float:
    raw = max(span, 1e-9) / n
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    s = _step(v, 4)
    return math.ceil(v / s) * s


def _thin(points: Sequence[Sequence[Any]], key: int, n: int = MAX_POINTS) -> list[Sequence[Any]]:
    """At most about n points, keeping each bucket's highest value (spikes survive)."""
    if len(points) <= n:
        return list(points)
    size = math.ceil(len(points) / n)
    out = []
    for i in range(0, len(points), size):
        bucket = [p for p in points[i:i + size] if num(p[key] if len(p) > key else None) is not None]
        if bucket:
            out.append(max(bucket, key=lambda p: p[key]))
    return out


class _Svg:
    def __init__(self, tmax: float) -> None:
        self.tmax = tmax
        self.parts: list[str] = []

    def x(self, t: float) -> float:
        return round(LABEL + max(0.0, min(t, self.tmax)) / self.tmax * PW, 1)

    def add(self, s: str) -> None:
        self.parts.append(s)


def _first_phase(entry: Entry, name: str) -> float | None:
    for p in entry.get("phases") or []:
        if p.get("name") == name and num(p.get("started")) is not None:
            return float(p["started"])  # type: ignore[arg-type]
    return None


def anchors(entry: Entry) -> tuple[float | None, float | None]:
    """(inject start, remedy start): where time to detect and time to recover count from."""
    faults = entry.get("faults") or []
    inject = _first_phase(entry, "inject")
    if inject is None:
        times = [num(f.get("injected_at")) for f in faults]
        inject = min((t for t in times if t is not None), default=None)
    remedy = _first_phase(entry, "remedy")
    if remedy is None:
        healed = [num(f.get("healed_at")) for f in faults]
        remedy = min((t for t in healed if t is not None), default=None)
    return inject, remedy if remedy is not None else inject


def render_timeline(entry: Entry, sid: str = "") -> str:
    phases = [p for p in entry.get("phases") or [] if num(p.get("started")) is not None]
    faults, derived = fault_windows(entry)
    samples = entry.get("samples") or {}
    series = samples.get("series") or {} if isinstance(samples, dict) else {}
    limits = entry.get("limits") or {}
    ttd, ttr = num(entry.get("time_to_detect_s")), num(entry.get("time_to_recover_s"))
    lim_d, lim_r = num(limits.get("detect_s")), num(limits.get("recover_s"))
    inject, remedy = anchors(entry)

    end = rel_end(entry)
    if inject is not None and ttd is not None:
        end = max(end, inject + ttd)
    if remedy is not None and ttr is not None:
        end = max(end, remedy + ttr)
    # a limit far beyond what happened is written, not drawn to scale
    for start, lim in ((inject, lim_d), (remedy, lim_r)):
        if start is not None and lim is not None and start + lim <= max(end, 1.0) * 1.5:
            end = max(end, start + lim)
    tmax = max(end * 1.03, 1.0)
    svg = _Svg(tmax)

    lane_names: list[str] = []
    for p in phases:
        if p.get("name") not in lane_names:
            lane_names.append(str(p.get("name")))
    # faults that overlap in time get rows of their own (at most MAX_FAULT_ROWS)
    fault_rows: list[list[Any]] = []
    for f in sorted(faults, key=lambda f: float(f["injected_at"])):  # type: ignore[arg-type]
        a = float(f["injected_at"])  # type: ignore[arg-type]
        for row in fault_rows:
            last = num(row[-1].get("healed_at"))
            if last is not None and last <= a:
                row.append(f)
                break
        else:
            if len(fault_rows) < MAX_FAULT_ROWS:
                fault_rows.append([f])
            else:
                fault_rows[-1].append(f)
    lanes = [f"\x00faults{i}" for i in range(len(fault_rows))] + lane_names + [TTD_LANE, TTR_LANE]
    charts = [k for k in ("latency", "jobs", "queue_depth") if series.get(k)]
    top = AXIS
    lanes_h = len(lanes) * (LANE + GAP)
    charts_h = len(charts) * (CHART + 14) if charts else 24
    height = top + lanes_h + charts_h + 6
    bottom = height - 6

    # time axis and grid
    step = _step(tmax)
    t = 0.0
    while t <= tmax + 1e-9:
        x = svg.x(t)
        label = f"{t:.0f}" if step >= 1 else f"{t:.1f}" if step >= 0.1 else f"{t:.2f}"
        svg.add(f'<line class=grid x1={x} x2={x} y1={top - 4} y2={bottom}></line>'
                f'<text class=tick x={x} y={top - 8} text-anchor=middle>{label}</text>')
        t += step
    svg.add(f'<text class=tick x={LABEL - 10} y={top - 8} text-anchor=end>seconds</text>')

    # fault windows, shaded across everything
    for i, f in enumerate(faults):
        a = float(f["injected_at"])  # type: ignore[arg-type]
        healed = num(f.get("healed_at"))
        b = healed if healed is not None else tmax
        cls = "fault-window" + ("" if healed is not None else " fault-open") + (" derived" if derived else "")
        tip = (("derived from the phase journal (no fault audit in this results.json)\n" if derived else "")
               + f"fault: {f.get('description', '?')}\ninjected +{fmt_s(a)} s, "
               + (f"healed +{fmt_s(healed)} s ({fmt_s(healed - a)} s)" if healed is not None else "NEVER HEALED")
               + (f"\nheal error: {f['heal_error']}" if f.get("heal_error") else ""))
        svg.add(f'<rect class="{cls}" x={svg.x(a)} y={top} width={max(1.5, svg.x(b) - svg.x(a))} '
                f'height={bottom - top}><title>{_esc(tip)}</title></rect>')

    y = top
    for lane in lanes:
        is_faults = lane.startswith("\x00faults")
        shown = ("faults (journal)" if derived else "faults") if lane == "\x00faults0" else "" if is_faults else lane
        svg.add(f'<text class=lane x={LABEL - 6} y={y + LANE - 5} text-anchor=end>{_esc(shown)}</text>')
        if is_faults:
            for f in fault_rows[int(lane[len("\x00faults"):])]:
                a = float(f["injected_at"])  # type: ignore[arg-type]
                healed = num(f.get("healed_at"))
                xa, xb = svg.x(a), svg.x(healed if healed is not None else tmax)
                cls = "fault-bar" + (" open" if healed is None or f.get("heal_error") else "")
                label = str(f.get("description", "fault"))
                room = int((xb - xa) / 6.2)
                svg.add(f'<rect class="{cls}" x={xa} y={y} width={max(2.0, xb - xa)} height={LANE} rx=2>'
                        f'<title>{_esc(label)}</title></rect>')
                if room >= 4:
                    text = label if len(label) <= room else label[:room - 1] + "…"
                    svg.add(f'<text class=barlabel x={xa + 3} y={y + LANE - 5}>{_esc(text)}</text>')
        elif lane in (TTD_LANE, TTR_LANE):
            start, val, lim = (inject, ttd, lim_d) if lane == TTD_LANE else (remedy, ttr, lim_r)
            what = "time to detect" if lane == TTD_LANE else "time to recover"
            if start is None or val is None:
                svg.add(f'<text class=muted x={LABEL + 4} y={y + LANE - 5}>{what}: not measured'
                        + (f" (limit {fmt_s(lim)} s)" if lim is not None else "") + '</text>')
            else:
                ok = lim is None or val <= lim
                xa, xb = svg.x(start), svg.x(start + val)
                svg.add(f'<rect class="ttx {"ok" if ok else "bad"}" x={xa} y={y + 3} width={max(2.0, xb - xa)} '
                        f'height={LANE - 6} rx=2><title>{what} {fmt_s(val)} s from +{fmt_s(start)} s'
                        + (f"; limit {fmt_s(lim)} s" if lim is not None else "") + '</title></rect>')
                label = f"{fmt_s(val)} s" + (f" / limit {fmt_s(lim)} s" if lim is not None else " (no limit)")
                if lim is not None and start + lim <= tmax:
                    xl = svg.x(start + lim)
                    svg.add(f'<line class=limit x1={xl} x2={xl} y1={y - 1} y2={y + LANE + 1}>'
                            f'<title>{what} limit {fmt_s(lim)} s</title></line>')
                elif lim is not None:
                    label += " →"
                tx = xb + 4 if xb + 4 + 7 * len(label) < W else xa - 4
                anchor = "start" if tx > xa else "end"
                svg.add(f'<text class="{"ok" if ok else "bad"}-text" x={tx} y={y + LANE - 5} '
                        f'text-anchor={anchor}>{_esc(label)}</text>')
        else:
            for p in phases:
                if p.get("name") != lane:
                    continue
                a = float(p["started"])  # type: ignore[arg-type]
                e = num(p.get("ended"))
                ok = p.get("ok")
                cls = "open" if e is None else "ok" if ok else "bad" if ok is False else "unknown"
                xa, xb = svg.x(a), svg.x(e if e is not None else tmax)
                tip = (f"{lane}: +{fmt_s(a)} s → " + (f"+{fmt_s(e)} s ({fmt_s(e - a)} s)" if e is not None
                                                      else "never ended")
                       + (f"\n{p.get('note')}" if p.get("note") else ""))
                svg.add(f'<rect class="phase {cls}" x={xa} y={y} width={max(2.0, xb - xa)} height={LANE} rx=2>'
                        f'<title>{_esc(tip)}</title></rect>')
                note = str(p.get("note") or "")
                room = int((xb - xa) / 6.2)
                if note and room >= 6:
                    svg.add(f'<text class=barlabel x={xa + 3} y={y + LANE - 5}>'
                            f'{_esc(note if len(note) <= room else note[:room - 1] + "…")}</text>')
        y += LANE + GAP

    if not charts:
        svg.add(f'<text class=muted x={LABEL + 4} y={y + 16}>no samples: the probes recorded nothing '
                'during this scenario</text>')
    for name in charts:
        y += 14
        _chart(svg, name, series[name], y)
        y += CHART

    title = f"timeline of {sid}" if sid else "scenario timeline"
    return (f'<svg class=timeline viewBox="0 0 {W} {height}" role=img '
            f'aria-label="{_esc(title)}" xmlns="http://www.w3.org/2000/svg">' + "".join(svg.parts) + "</svg>")


def _y(y0: float, v: float, vmax: float) -> float:
    """A value's height in a chart (3 px clear of its top and bottom edges)."""
    return round(y0 + CHART - 3 - max(0.0, min(v, vmax)) / vmax * (CHART - 6), 1)


def _poly(svg: _Svg, pts: list[tuple[float, float]], y0: float, vmax: float, cls: str) -> str:
    if len(pts) == 1:  # a line needs two points: one sample is a dot
        (t, v), = pts
        return f'<circle class="{cls} dot" cx={svg.x(t)} cy={_y(y0, v, vmax)} r=2.5></circle>'
    coords = " ".join(f"{svg.x(t)},{_y(y0, v, vmax)}" for t, v in pts)
    return f'<polyline class="{cls}" points="{coords}"></polyline>'


def _chart(svg: _Svg, name: str, data: list[list[Any]], y0: float) -> None:
    svg.add(f'<rect class=chartbg x={LABEL} y={y0} width={PW} height={CHART}></rect>')
    if name == "latency":
        pts = [p for p in data if len(p) >= 2 and num(p[0]) is not None]
        values = [float(p[1]) for p in pts if num(p[1]) is not None]
        vmax = _nice_max(max(values, default=1.0))
        ok_pts = _thin([p for p in pts if num(p[1]) is not None], 1)
        svg.add(_poly(svg, [(float(p[0]), float(p[1])) for p in ok_pts], y0, vmax, "lat"))
        bad = {"s5": 0, "s4": 0, "noans": 0}
        marks = []
        for p in pts:
            status = p[2] if len(p) > 2 else 200
            ms = num(p[1])
            code = num(status)
            cls = ("noans" if status is None or code is None else "s5" if code >= 500
                   else "s4" if code >= 400 else "")
            if not cls:
                continue
            bad[cls] += 1
            if len(marks) < 400:
                v = vmax if ms is None else min(ms, vmax)
                marks.append(f'<circle class={cls} cx={svg.x(float(p[0]))} cy={_y(y0, v, vmax)} '
                             f'r=2.4><title>+{fmt_s(float(p[0]))} s: '
                             f'{"no answer" if status is None else status}'
                             f'{"" if ms is None else f", {ms:.0f} ms"}</title></circle>')
        svg.add("".join(marks))
        legend = [f"{len(pts)} health probe{'' if len(pts) == 1 else 's'}"] + [f"{n} {label}" for k, label in (("s5", "5xx"), ("s4", "4xx"),
                                                                         ("noans", "no answer"))
                                           if (n := bad[k])]
        svg.add(f'<text class=lane x={LABEL - 6} y={y0 + 12} text-anchor=end>latency ms</text>'
                f'<text class=tick x={LABEL - 6} y={y0 + 26} text-anchor=end>max {vmax:.0f}</text>'
                f'<text class=legend x={LABEL + PW - 4} y={y0 - 3} text-anchor=end>{_esc(" · ".join(legend))}</text>')
    elif name == "jobs":
        pts = [p for p in data if len(p) >= 2 and num(p[0]) is not None and isinstance(p[1], dict)]
        states = [s for s in JOB_STATES if any(s in p[1] for p in pts)]
        states += sorted({k for p in pts for k in p[1]} - set(states))
        vmax = _nice_max(max((float(v) for p in pts for v in p[1].values() if num(v) is not None), default=1.0))
        step = max(1, math.ceil(len(pts) / MAX_POINTS))
        thin = pts[::step]
        legend = []
        for i, s in enumerate(states):
            cls = f"job-{s}" if s in JOB_STATES else "job-other"
            svg.add(_poly(svg, [(float(p[0]), float(p[1].get(s) or 0)) for p in thin], y0, vmax, f"jobs {cls}"))
            last = num(pts[-1][1].get(s)) if pts else None
            legend.append(f'<tspan class="{cls}-text">{_esc(s)} {last:.0f}</tspan>' if last is not None
                          else f'<tspan class="{cls}-text">{_esc(s)}</tspan>')
        svg.add(f'<text class=lane x={LABEL - 6} y={y0 + 12} text-anchor=end>jobs</text>'
                f'<text class=tick x={LABEL - 6} y={y0 + 26} text-anchor=end>max {vmax:.0f}</text>'
                f'<text class=legend x={LABEL + PW - 4} y={y0 - 3} text-anchor=end>{" ".join(legend)}</text>')
    else:
        pts = _thin([p for p in data if len(p) >= 2 and num(p[0]) is not None and num(p[1]) is not None], 1)
        vmax = _nice_max(max((float(p[1]) for p in pts), default=1.0))
        svg.add(_poly(svg, [(float(p[0]), float(p[1])) for p in pts], y0, vmax, "queue"))
        svg.add(f'<text class=lane x={LABEL - 6} y={y0 + 12} text-anchor=end>queue depth</text>'
                f'<text class=tick x={LABEL - 6} y={y0 + 26} text-anchor=end>max {vmax:.0f}</text>')
