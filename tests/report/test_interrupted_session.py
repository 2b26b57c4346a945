"""Black-box: a pytest session stopped in the middle of a scenario never publishes it as passed."""

from __future__ import annotations

import json

import pytest

pytest_plugins = ["pytester"]


def test_ctrl_c_during_a_scenario_reports_it_interrupted(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.scenario("api.auth")
        def test_first():
            pass

        @pytest.mark.scenario("queue.worker_frozen")
        def test_second():
            raise KeyboardInterrupt  # what Ctrl-C (or SIGTERM turned into one) does mid-scenario

        @pytest.mark.scenario("render.timeout")
        def test_never_started():
            pass
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--chaos-reports", "out")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    doc = json.loads((pytester.path / "out" / "results.json").read_text())
    outcomes = {e["id"]: e["outcome"] for e in doc["results"]}
    assert outcomes == {"api.auth": "passed", "queue.worker_frozen": "interrupted"}
    assert doc["summary"] == {"passed": 1, "interrupted": 1}
    assert doc["interrupted"] is True
    page = (pytester.path / "out" / "report.html").read_text()
    assert "INTERRUPTED" in page
