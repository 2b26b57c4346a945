"""The trend against reports/history/: TTR regressions, new failures, flaky scenarios."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from renderchaos.report.history import History, compact, trend
from renderchaos.report.page import ReportInputs, render_html
from renderchaos.report.results import write_report
from renderchaos.report.synthetic import synthetic_doc


def run(i: int, results: dict[str, tuple[str, float | None]], platform: str = "refstack",
        broken: list[str] | None = None) -> dict[str, Any]:
    return {"run_id": f"r{i}", "generated_at": f"2025-01-01T00:{i:02d}:00Z", "platform": platform,
            "broken": broken or [], "summary": {},
            "results": [{"id": sid, "outcome": o, "time_to_recover_s": ttr} for sid, (o, ttr) in results.items()]}


def test_a_doubled_time_to_recover_is_flagged_against_the_median() -> None:
    earlier = [run(i, {"deps.db_down": ("passed", ttr), "render.timeout": ("passed", 4.0)})
               for i, ttr in enumerate([5.0, 6.0, 40.0, 5.5, 6.5])]  # median 6.0 (one outlier)
    now = run(9, {"deps.db_down": ("passed", 12.0), "render.timeout": ("passed", 7.9)})
    t = trend(now, earlier)
    assert [s.id for s in t.ttr_regressions] == ["deps.db_down"]
    st = t.scenarios["deps.db_down"]
    assert st.ttr_median == 6.0 and st.ttr_runs == 5
    assert not t.scenarios["render.timeout"].ttr_regression  # 1.98x: not flagged


def test_tiny_recoveries_doubling_are_not_news() -> None:
    earlier = [run(i, {"api.auth": ("passed", 0.1)}) for i in range(3)]
    assert not trend(run(5, {"api.auth": ("passed", 0.3)}), earlier).ttr_regressions


def test_new_failure_fixed_and_flaky() -> None:
    earlier = [run(0, {"a": ("passed", 1), "b": ("failed", 1), "c": ("passed", 1)}),
               run(1, {"a": ("passed", 1), "b": ("failed", 1), "c": ("failed", 1)}),
               run(2, {"a": ("passed", 1), "b": ("failed", 1), "c": ("passed", 1)})]
    t = trend(run(3, {"a": ("failed", 1), "b": ("passed", 1), "c": ("failed", 1), "d": ("failed", 1)}), earlier)
    assert sorted(s.id for s in t.new_failures) == ["a", "c", "d"]
    assert [s.id for s in t.fixed] == ["b"]
    assert [s.id for s in t.flaky] == ["c"]
    assert t.scenarios["c"].flips == 3
    assert t.scenarios["a"].outcomes == ["passed", "passed", "passed", "failed"]


def test_skipped_and_interrupted_runs_neither_flip_nor_make_a_failure_new() -> None:
    earlier = [run(0, {"a": ("failed", 1)}), run(1, {"a": ("interrupted", None)}), run(2, {"a": ("skipped", None)})]
    t = trend(run(3, {"a": ("failed", 1)}), earlier)
    assert not t.new_failures and not t.flaky


def test_only_runs_of_the_same_platform_and_planted_bugs_are_compared() -> None:
    earlier = [run(0, {"a": ("passed", 1.0)}, platform="unmanic"),
               run(1, {"a": ("passed", 1.0)}, broken=["api_slow_submit"]),
               run(2, {"a": ("passed", 10.0)})]
    t = trend(run(3, {"a": ("passed", 10.0)}), earlier)
    assert len(t.runs) == 1 and t.skipped_runs == 2
    assert not t.ttr_regressions


def test_history_round_trip_and_the_page_shows_the_regression(tmp_path: Path) -> None:
    for i, ttr in enumerate([4.0, 5.0, 6.0]):
        doc = synthetic_doc(4, seed=1, failures=0, with_samples=False)
        doc["run_id"], doc["generated_at"] = f"old{i}", f"2025-01-0{i + 1}T00:00:00Z"
        for e in doc["results"]:
            e["time_to_recover_s"] = ttr
        write_report(tmp_path, doc)
    doc = synthetic_doc(4, seed=1, failures=0, with_samples=False)
    doc["run_id"], doc["generated_at"] = "now", "2025-02-01T00:00:00Z"
    slow = doc["results"][2]
    slow["time_to_recover_s"] = 10.0  # 2x the median of 4, 5, 6
    earlier = History(tmp_path / "history").load(exclude_run="now")
    assert [r["run_id"] for r in earlier] == ["old0", "old1", "old2"]
    assert compact(doc)["results"][2]["time_to_recover_s"] == 10.0
    html = render_html(doc, ReportInputs(earlier=earlier))
    trend_html = html[html.index("<section id=trend>"):html.index("</section>", html.index("<section id=trend>"))]
    assert slow["id"] in trend_html and "10.0 s" in trend_html and "median of 3 earlier run(s) 5.0 s" in trend_html
    assert 'TTR ×2' in html
