"""What writing the report adds to a run: results.json + report.html + the history entry.

Synthetic documents shaped like a resilience run (renderchaos.report.synthetic: every scenario
with phases, a fault, probe samples every ``--interval`` s over about a minute, 2 failures),
written into a reports directory that already holds 50 earlier runs (the trend is computed
against all of them). Median of ``--repeat`` runs. Budget: under 2 s for 40 scenarios.

    python benchmarks/report.py [--repeat 5] [--interval 0.5]

Prints ``report_generate_s_40``, ``report_generate_s_50`` (seconds for write_report),
``report_render_html_s_50`` (the page alone), ``report_html_kib_50`` and
``otel_build_spans_s_40`` (building the spans export_run sends; the network is not timed).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from renderchaos.report.history import History  # noqa: E402
from renderchaos.report.page import ReportInputs, render_html  # noqa: E402
from renderchaos.report.results import write_report  # noqa: E402
from renderchaos.report.synthetic import synthetic_doc  # noqa: E402


def _median_time(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--interval", type=float, default=0.5, help="probe sample interval of the synthetic runs (s)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="renderchaos-bench-report-") as tmp:
        out = Path(tmp)
        hist = History(out / "history", keep=50)
        for i in range(50):
            old = synthetic_doc(50, seed=100 + i, failures=i % 3, with_samples=False)
            old["generated_at"] = f"2025-01-{1 + i // 24:02d}T{i % 24:02d}:00:00Z"
            hist.append(old)
        for n in (40, 50):
            doc = synthetic_doc(n, seed=1, failures=2, interval_s=args.interval)
            print(f"report_generate_s_{n}={_median_time(lambda: write_report(out, doc), args.repeat):.3f}")
        doc = synthetic_doc(50, seed=1, failures=2, interval_s=args.interval)
        inputs = ReportInputs.gather(out, hist.load(exclude_run=doc["run_id"]))
        print(f"report_render_html_s_50={_median_time(lambda: render_html(doc, inputs), args.repeat):.3f}")
        print(f"report_html_kib_50={len(render_html(doc, inputs).encode()) / 1024:.0f}")
        try:
            from renderchaos.report.otel import build_spans
        except ImportError:
            return
        doc40 = synthetic_doc(40, seed=1, failures=2, interval_s=args.interval)
        try:
            print(f"otel_build_spans_s_40={_median_time(lambda: build_spans(doc40), args.repeat):.3f}")
        except ImportError:  # the otel extra is not installed
            pass


if __name__ == "__main__":
    main()
