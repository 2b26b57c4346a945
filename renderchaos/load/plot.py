"""The load.chaos timeline: requests/s, error rate and p95 over time, fault windows shaded (PNG).

matplotlib (Agg backend, no display) is an optional dependency: ``pip install matplotlib``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from renderchaos.load.history import FaultImpact, FaultWindow, Sample, points


def timeline_png(samples: Sequence[Sample], windows: Sequence[FaultWindow], path: Path,
                 impacts: Sequence[FaultImpact] = (), title: str = "load.chaos",
                 error_threshold: float | None = None, p95_threshold_ms: float | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = points(samples)
    t0 = samples[0].t if samples else 0.0
    xs = [p.t - t0 for p in pts]
    fig, axes = plt.subplots(3, 1, figsize=(12, 8), sharex=True)
    axes[0].plot(xs, [p.rps for p in pts], color="tab:blue", lw=1)
    axes[0].set_ylabel("requests/s")
    axes[1].plot(xs, [100 * (p.error_rate or 0.0) for p in pts], color="tab:red", lw=1)
    axes[1].set_ylabel("errors %")
    axes[2].plot(xs, [p.p95_ms or 0 for p in pts], color="tab:purple", lw=1)
    axes[2].set_ylabel("p95 ms (window)")
    axes[2].set_xlabel("seconds since the load started")
    if error_threshold is not None:
        axes[1].axhline(100 * error_threshold, color="grey", ls="--", lw=0.8)
    if p95_threshold_ms is not None:
        axes[2].axhline(p95_threshold_ms, color="grey", ls="--", lw=0.8)
    by_name = {i.name: i for i in impacts}
    colours = plt.get_cmap("tab10")
    for n, w in enumerate(windows):
        for ax in axes:
            ax.axvspan(w.injected - t0, w.healed - t0, color=colours(n % 10), alpha=0.18)
        imp = by_name.get(w.name)
        if imp is not None and imp.recovered_at is not None:
            for ax in axes:
                ax.axvline(imp.recovered_at - t0, color=colours(n % 10), ls=":", lw=1)
        label = w.name + (f"\nTTR {imp.time_to_recover_s:.0f}s" if imp and imp.time_to_recover_s is not None else "")
        axes[0].text(w.injected - t0, axes[0].get_ylim()[1] * 0.95, label, fontsize=7, va="top")
    fig.suptitle(f"{title}: shaded = fault injected .. healed; dotted = back under threshold")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
