"""Collector: test reports -> results entries; an unfinished scenario is never a pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from renderchaos.report.results import PROPERTY, Collector, build_doc, dumps, write_report
from renderchaos.report.synthetic import synthetic_doc

NODE = "suites/test_queue.py::test_worker_frozen[queue.worker_frozen]"
SCEN = [("scenario", "queue.worker_frozen")]


def journal(**kw: object) -> list[tuple[str, object]]:
    return SCEN + [(PROPERTY, json.dumps({"id": "queue.worker_frozen", "runbook": "R §三.2 队列积压", **kw}))]


def test_a_scenario_that_passes_all_three_phases_is_passed() -> None:
    c = Collector()
    c.add(NODE, "setup", "passed", SCEN, 0.5, "")
    c.add(NODE, "call", "passed", SCEN, 3.0, "")
    c.add(NODE, "teardown", "passed", journal(time_to_recover_s=1.5), 0.1, "")
    [e] = c.results()
    assert e["outcome"] == "passed"
    assert e["time_to_recover_s"] == 1.5 and e["duration_s"] == 3.6


def test_setup_passed_and_no_call_report_is_interrupted_not_passed() -> None:
    """Ctrl-C while the scenario ran: pytest re-raises KeyboardInterrupt, no call report comes."""
    c = Collector()
    c.add(NODE, "setup", "passed", SCEN, 0.062, "")
    [e] = c.results()
    assert e["outcome"] == "interrupted"
    doc = build_doc({"profile": "gate"}, c.results())
    assert doc["summary"] == {"interrupted": 1}
    assert doc["interrupted"] is True


def test_a_journal_from_teardown_does_not_turn_an_unfinished_run_into_a_pass() -> None:
    c = Collector()
    c.add(NODE, "setup", "passed", SCEN, 0.06, "")
    c.add(NODE, "teardown", "passed", journal(time_to_detect_s=None), 0.2, "")
    assert c.results()[0]["outcome"] == "interrupted"


def test_keyboard_interrupt_in_the_call_is_interrupted() -> None:
    c = Collector()
    c.add(NODE, "setup", "passed", SCEN, 0.1, "")
    c.add(NODE, "call", "failed", SCEN, 2.0, "Traceback ...\nKeyboardInterrupt", "KeyboardInterrupt")
    assert c.results()[0]["outcome"] == "interrupted"


def test_the_session_says_interrupted_and_a_test_that_only_started_is_listed(tmp_path: Path) -> None:
    c = Collector()
    c.add(NODE, "setup", "passed", SCEN, 0.1, "")
    c.add(NODE, "call", "passed", SCEN, 1.0, "")
    c.logstart("suites/test_render.py::test_timeout[render.timeout]")
    path = c.write(tmp_path, {"profile": "resilience", "interrupted": True, "run_id": "r1"})
    doc = json.loads(path.read_text())
    assert doc["interrupted"] is True
    by_id = {e["id"]: e["outcome"] for e in doc["results"]}
    assert by_id == {"queue.worker_frozen": "passed", "render.timeout": "interrupted"}
    assert doc["summary"] == {"passed": 1, "interrupted": 1}
    html = (tmp_path / "report.html").read_text()
    assert "INTERRUPTED" in html and "never finished" in html


def test_a_run_not_interrupted_ignores_tests_that_only_started(tmp_path: Path) -> None:
    c = Collector()
    c.add(NODE, "setup", "passed", SCEN, 0.1, "")
    c.add(NODE, "call", "passed", SCEN, 1.0, "")
    c.logstart("suites/test_render.py::test_timeout[render.timeout]")
    assert [e["id"] for e in c.results(interrupted=False)] == ["queue.worker_frozen"]


@pytest.mark.parametrize("reports, outcome", [
    ([("setup", "failed")], "error"),
    ([("setup", "skipped")], "skipped"),
    ([("setup", "passed"), ("call", "failed")], "failed"),
    ([("setup", "passed"), ("call", "passed"), ("teardown", "failed")], "error"),
    ([("setup", "passed"), ("call", "failed"), ("teardown", "failed")], "failed"),
    ([("???", "failed")], "error"),  # xdist: worker crashed while running it
])
def test_outcomes(reports: list[tuple[str, str]], outcome: str) -> None:
    c = Collector()
    for when, out in reports:
        c.add(NODE, when, out, SCEN, 0.1, f"{when} {out} detail", f"{when} crash" if out == "failed" else "")
    [e] = c.results()
    assert e["outcome"] == outcome
    if outcome in ("failed", "error"):
        assert "crash" in e["failure"]


def test_the_call_failure_stays_the_headline_and_the_teardown_failure_is_kept() -> None:
    c = Collector()
    c.add(NODE, "setup", "passed", SCEN, 0.1, "")
    c.add(NODE, "call", "failed", SCEN, 1.0, "tb", "ScenarioFailed: [q] x\n  expected: a\n  observed: b")
    c.add(NODE, "teardown", "failed", SCEN, 0.1, "tb2", "Failed: [q] could not heal: proxy down")
    e = c.results()[0]
    assert e["failure"].startswith("ScenarioFailed")
    assert "could not heal" in e["failure"]


def test_xfail_and_xpass() -> None:
    c = Collector()
    c.add(NODE, "setup", "passed", SCEN, 0.1, "")
    c.add(NODE, "call", "skipped", SCEN, 0.1, "", wasxfail="finding: unmanic loses the task")
    other = NODE.replace("frozen]", "frozen2]")
    c.add(other, "setup", "passed", SCEN, 0.1, "")
    c.add(other, "call", "passed", SCEN, 0.1, "", wasxfail="")
    outcomes = sorted(e["outcome"] for e in c.results())
    assert outcomes == ["xfailed", "xpassed"]


def test_reports_without_scenario_properties_are_ignored() -> None:
    c = Collector()
    c.add("tests/test_x.py::test_plain", "call", "passed", [], 0.1, "")
    assert c.results() == []
    assert c.write(Path("/nonexistent-never-written"), {}) is None


def test_add_report_reads_a_pytest_report() -> None:
    rep = pytest.TestReport(NODE, ("f", 1, "t"), {}, "passed", None, "call", user_properties=list(SCEN),
                            duration=1.0)
    setup = pytest.TestReport(NODE, ("f", 1, "t"), {}, "passed", None, "setup", user_properties=list(SCEN),
                              duration=0.1, start=1_700_000_000.0, stop=1_700_000_000.1)
    c = Collector()
    c.add_report(setup)
    c.add_report(rep)
    [e] = c.results()
    assert e["outcome"] == "passed"
    xfail = pytest.TestReport(NODE + "x", ("f", 1, "t"), {}, "skipped", None, "call", user_properties=list(SCEN))
    xfail.wasxfail = "finding: loses the task"  # type: ignore[attr-defined]
    c.add_report(pytest.TestReport(NODE + "x", ("f", 1, "t"), {}, "passed", None, "setup",
                                   user_properties=list(SCEN)))
    c.add_report(xfail)
    assert {e["outcome"] for e in c.results()} == {"passed", "xfailed"}


def test_write_report_keeps_a_bounded_history(tmp_path: Path) -> None:
    for i in range(7):
        doc = synthetic_doc(3, seed=i + 1, failures=0, with_samples=False)
        doc["generated_at"] = f"2025-01-01T00:00:{i:02d}Z"
        write_report(tmp_path, doc, keep=5)
    files = sorted((tmp_path / "history").glob("*.json"))
    assert len(files) == 5
    assert [json.loads(f.read_text())["run_id"] for f in files] == [f"synthetic{i}" for i in range(3, 8)]
    # the same run written twice is one history entry
    write_report(tmp_path, doc, keep=5)
    assert len(list((tmp_path / "history").glob("*.json"))) == 5
    assert json.loads((tmp_path / "results.json").read_text())["run_id"] == "synthetic7"


def test_results_json_round_trips_with_each_series_on_one_line() -> None:
    doc = synthetic_doc(3, failures=1)
    text = dumps(doc)
    assert json.loads(text) == doc
    line = next(ln for ln in text.splitlines() if '"latency":' in ln)
    assert json.loads(line.split('"latency": ', 1)[1].rstrip(",")) == doc["results"][0]["samples"]["series"]["latency"]
