"""Shards end to end, without containers: pytest-split splits a scenario selection by recorded
durations, each shard writes its own reports through the real plugin, and the merge equals the
unsharded run (same ids, same outcomes, same JUnit counts)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from renderchaos import shards as S

pytest_plugins = ["pytester"]

# 8 scenario tests with different outcomes and costs (busy-wait-free: durations come from the file)
SUITE = """
import pytest

@pytest.mark.scenario("a.pass")
def test_a(): pass

@pytest.mark.scenario("b.fail")
def test_b(): assert False, "b broke its runbook"

@pytest.mark.scenario("c.skip")
def test_c(): pytest.skip("target lacks ['containers']")

@pytest.mark.scenario("d.pass")
def test_d(): pass

@pytest.mark.scenario("e.error")
def test_e(broken_fixture): pass

@pytest.fixture
def broken_fixture():
    raise RuntimeError("stack did not start")

@pytest.mark.scenario("f.pass")
def test_f(): pass

@pytest.mark.scenario("g.pass")
@pytest.mark.parametrize("n", [1, 2])
def test_g(n): pass
"""

DURATIONS = {  # skewed, so a count-based split would be unbalanced
    "test_suite.py::test_a": 100.0, "test_suite.py::test_b": 10.0, "test_suite.py::test_c": 10.0,
    "test_suite.py::test_d": 10.0, "test_suite.py::test_e": 10.0, "test_suite.py::test_f": 10.0,
    "test_suite.py::test_g[1]": 30.0, "test_suite.py::test_g[2]": 30.0,
}


def _run(pytester: pytest.Pytester, reports: Path, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "--chaos-profile", "all",
                                         "--chaos-reports", str(reports), *args)


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_suite=SUITE)
    (pytester.path / "durations.json").write_text(json.dumps(DURATIONS))
    return pytester


def _outcomes(doc: dict) -> dict[str, str]:
    return {e["id"]: e["outcome"] for e in doc["results"]}


def test_two_shards_merge_to_the_unsharded_report(suite: pytest.Pytester, tmp_path: Path) -> None:
    full = _run(suite, tmp_path / "full")
    assert full.ret == 1  # one failure, one error
    split = ("--splits", "2", "--durations-path", "durations.json", "--splitting-algorithm", "least_duration")
    for group in (1, 2):
        _run(suite, tmp_path / f"shard-{group}", *split, "--group", str(group))
    one, two = (json.loads((tmp_path / f"shard-{g}" / "results.json").read_text()) for g in (1, 2))
    assert one["results"] and two["results"], "both shards ran something"
    assert not set(_outcomes(one)) & set(_outcomes(two)), "the shards must not overlap"
    # balanced by the recorded durations (210 s in all, test_a alone is 100 s): a count-based split
    # would give 4 tests each, ~170 s against ~40 s
    est = [sum(DURATIONS[e["nodeid"]] for e in d["results"]) for d in (one, two)]
    assert abs(est[0] - est[1]) <= 10, est

    doc = S.merge([tmp_path / "shard-1", tmp_path / "shard-2"], tmp_path / "merged")
    unsharded = json.loads((tmp_path / "full" / "results.json").read_text())
    assert _outcomes(doc) == _outcomes(unsharded)
    assert doc["summary"] == unsharded["summary"] == {"passed": 5, "failed": 1, "skipped": 1, "error": 1}
    assert [e["id"] for e in doc["results"]] == [e["id"] for e in unsharded["results"]]
    assert doc["elapsed_s"] == max(one["elapsed_s"], two["elapsed_s"])
    assert [s["run_id"] for s in doc["shards"]] == [one["run_id"], two["run_id"]]
    assert doc["run_id"] == [one["run_id"], two["run_id"]], "differing header fields are kept per shard"
    assert doc["profile"] == "all"
    failure = next(e for e in doc["results"] if e["id"] == "b.fail")["failure"]
    assert "b broke its runbook" in failure

    merged_junit = ET.parse(tmp_path / "merged" / "junit.xml").getroot()
    full_junit = ET.parse(tmp_path / "full" / "junit.xml").getroot()
    suite_el, full_el = merged_junit.find("testsuite"), full_junit.find("testsuite")
    for key in ("tests", "failures", "errors", "skipped"):
        assert suite_el.get(key) == full_el.get(key), key
    assert sorted(c.get("name") for c in suite_el.iter("testcase")) == \
        sorted(c.get("name") for c in full_el.iter("testcase"))
    page = (tmp_path / "merged" / "report.html").read_text()
    assert "b.fail" in page and "g.pass" in page and "5 passed" in page


def test_overlapping_shards_are_refused(suite: pytest.Pytester, tmp_path: Path) -> None:
    _run(suite, tmp_path / "x")
    _run(suite, tmp_path / "y", "-k", "test_a")
    with pytest.raises(S.ShardError, match=r"in shard x and in shard y: the shards overlap"):
        S.merge([tmp_path / "x", tmp_path / "y"], tmp_path / "merged")


def test_a_shard_that_did_not_finish_is_named(tmp_path: Path) -> None:
    (tmp_path / "shard-1").mkdir()
    with pytest.raises(S.ShardError, match=r"shard-1 has neither results.json nor junit.xml: its run did not finish"):
        S.merge([tmp_path / "shard-1"], tmp_path / "merged")
    (tmp_path / "shard-2").mkdir()
    (tmp_path / "shard-2" / "results.json").write_text('{"results": [')
    with pytest.raises(S.ShardError, match="is not JSON"):
        S.merge([tmp_path / "shard-2"], tmp_path / "merged")


def test_inconsistent_summary_is_refused() -> None:
    doc = {"summary": {"passed": 2}, "results": [{"id": "a", "nodeid": "t::a", "outcome": "passed"}]}
    with pytest.raises(S.ShardError, match="passed=2 but the entries hold 1"):
        S.merge_results([("s1", doc)])


def test_unknown_summary_fields_are_merged_generically() -> None:
    a = {"profile": "resilience", "interrupted": False, "elapsed_s": 10.0,
         "summary": {"passed": 1, "faults_active_at_end": 0}, "results": [{"id": "a", "nodeid": "t::a", "outcome": "passed"}]}
    b = {"profile": "resilience", "interrupted": True, "elapsed_s": 12.5,
         "summary": {"interrupted": 1, "faults_active_at_end": 1},
         "results": [{"id": "b", "nodeid": "t::b", "outcome": "interrupted"}]}
    doc = S.merge_results([("s1", a), ("s2", b)])
    assert doc["summary"] == {"passed": 1, "interrupted": 1, "faults_active_at_end": 1}
    assert doc["interrupted"] is True and doc["elapsed_s"] == 12.5 and doc["profile"] == "resilience"


def test_durations_refreshed_from_results_use_pytest_splits_keys(suite: pytest.Pytester, tmp_path: Path) -> None:
    """The durations command writes the keys pytest-split itself stores (--store-durations)."""
    _run(suite, tmp_path / "r", "--store-durations", "--durations-path", "stored.json")
    stored = json.loads((suite.path / "stored.json").read_text())
    out = tmp_path / "refreshed.json"
    assert S.main(["durations", str(tmp_path / "r" / "results.json"), "--out", str(out)]) == 0
    refreshed = json.loads(out.read_text())
    assert set(refreshed) == set(stored)
    for key, seconds in refreshed.items():
        assert seconds == pytest.approx(stored[key], abs=0.05), key


def test_committed_durations_file_covers_the_resilience_selection() -> None:
    """Every scenario of the selection CI shards has a recorded duration (else pytest-split guesses
    the average and the shards drift apart)."""
    import subprocess
    import sys

    recorded = json.loads(S.DURATIONS_FILE.read_text())
    root = S.DURATIONS_FILE.parent
    out = subprocess.run([sys.executable, "-m", "pytest", "suites", "--chaos-profile", "resilience", "--collect-only",
                          "-q", "-p", "no:cacheprovider"], cwd=root, capture_output=True, text=True, timeout=120)
    collected = [line for line in out.stdout.splitlines() if line.startswith("suites/") and "::" in line]
    assert collected, out.stdout + out.stderr
    missing = sorted(set(collected) - set(recorded))
    assert not missing, (f"{len(missing)} scenarios have no duration in {S.DURATIONS_FILE.name} (e.g. {missing[:3]}); "
                         "refresh it from a run: python -m renderchaos.shards durations reports/results.json")
    assert all(v > 0 for v in recorded.values())
