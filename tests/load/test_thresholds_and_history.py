"""Threshold evaluation and history analysis on synthetic Locust CSVs (no Locust, no stack)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from renderchaos.errors import ConfigError
from renderchaos.load import history as H
from renderchaos.load import thresholds as th

STATS_HEADER = ["Type", "Name", "Request Count", "Failure Count", "Median Response Time", "Average Response Time",
                "Min Response Time", "Max Response Time", "Average Content Size", "Requests/s", "Failures/s",
                "50%", "66%", "75%", "80%", "90%", "95%", "98%", "99%", "99.9%", "99.99%", "100%"]
HIST_HEADER = ["Timestamp", "User Count", "Type", "Name", "Requests/s", "Failures/s", "50%", "66%", "75%", "80%",
               "90%", "95%", "98%", "99%", "99.9%", "99.99%", "100%", "Total Request Count", "Total Failure Count",
               "Total Median Response Time", "Total Average Response Time", "Total Min Response Time",
               "Total Max Response Time", "Total Average Content Size"]


def write_stats(path: Path, rows: list[tuple[str, str, int, int, float, float, float]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(STATS_HEADER)
        for typ, name, n, fails, rps, p95, p99 in rows:
            w.writerow([typ, name, n, fails, 50, 60, 1, 900, 100, rps, 0, 50, 60, 70, 80, 90, p95, 98, p99, 1, 1, 1])
    return path


def write_history(path: Path, per_second: list[tuple[int, int, float]], t0: float = 1_700_000_000.0) -> Path:
    """per_second: (requests, failures, current p95) in each 1 s interval; cumulative in the CSV."""
    total = fails = 0
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HIST_HEADER)
        w.writerow([int(t0), 10, "", "Aggregated", 0, 0] + ["N/A"] * 11 + [0, 0, 0, 0, 0, 0, 0])
        for i, (req, fail, p95) in enumerate(per_second, start=1):
            total, fails = total + req, fails + fail
            w.writerow([int(t0) + i, 10, "job", "job", req, fail] + [0] * 11 + [total, fails, 0, 0, 0, 0, 0])
            w.writerow([int(t0) + i, 10, "", "Aggregated", req, fail] + [p95] * 11 + [total, fails, 0, 0, 0, 0, 0])
    return path


T = th.Thresholds(max_failure_ratio=0.01, min_rps=5.0, p95_ms={"submit": 500.0, "Aggregated": 800.0},
                  p99_ms={"Aggregated": 2000.0})


def test_thresholds_hold(tmp_path: Path) -> None:
    stats = th.read_stats_csv(write_stats(tmp_path / "s.csv", [
        ("submit", "submit", 100, 0, 2.0, 400, 600), ("", "Aggregated", 1000, 5, 10.0, 700, 1500)]))
    assert th.evaluate(stats, T) == []


def test_each_breach_named_with_how_far(tmp_path: Path) -> None:
    stats = th.read_stats_csv(write_stats(tmp_path / "s.csv", [
        ("submit", "submit", 100, 0, 2.0, 5100, 5200), ("", "Aggregated", 1000, 50, 4.0, 900, 2500)]))
    breaches = {b.threshold: b for b in th.evaluate(stats, T)}
    assert set(breaches) == {"failure ratio (Aggregated)", "throughput (Aggregated req/s)", "p95 submit",
                             "p95 Aggregated", "p99 Aggregated"}
    b = breaches["p95 submit"]
    assert (b.limit, b.observed) == (500.0, 5100.0)
    assert "4600 ms over (10.2x the limit)" in str(b)
    assert "observed 4 req/s, limit >= 5 req/s -> 1 req/s under" in str(breaches["throughput (Aggregated req/s)"])


def test_request_type_not_made_is_not_judged(tmp_path: Path) -> None:
    stats = th.read_stats_csv(write_stats(tmp_path / "s.csv", [("", "Aggregated", 1000, 0, 10.0, 100, 200)]))
    assert th.evaluate(stats, T) == []


def test_no_requests_is_a_breach() -> None:
    [b] = th.evaluate([], T)
    assert b.threshold.startswith("requests made") and "limit >= 1" in str(b)


def test_load_file_and_overrides(tmp_path: Path) -> None:
    f = tmp_path / "t.toml"
    f.write_text('[load]\nmax_failure_ratio = 0.02\n[load.p95_ms]\n"Aggregated" = 900\n[chaos]\nstable_s = 4\n')
    t = th.load(f, "min_rps=500;p95_ms.submit=5;chaos.recovery_deadline_s=30")
    assert t.max_failure_ratio == 0.02 and t.min_rps == 500
    assert t.p95_ms == {"Aggregated": 900.0, "submit": 5.0}
    assert (t.chaos.stable_s, t.chaos.recovery_deadline_s) == (4.0, 30.0)


def test_default_file_loads() -> None:
    t = th.load(th.DEFAULT_FILE, "")
    assert t.max_failure_ratio > 0 and "Aggregated" in t.p95_ms


@pytest.mark.parametrize("bad", ["nonsense", "min_rps=fast", "p95_ms=5"])
def test_bad_overrides_are_config_errors(bad: str) -> None:
    with pytest.raises(ConfigError):
        th.load(th.DEFAULT_FILE, bad)


def test_stats_are_keyed_by_operation(tmp_path: Path) -> None:
    stats = th.read_stats_csv(write_stats(tmp_path / "s.csv", [
        ("submit", "submit", 10, 0, 1.0, 100, 200), ("job", "job", 30, 1, 3.0, 50, 90),
        ("custom", "thing", 1, 0, 0.1, 5, 5), ("", "Aggregated", 41, 1, 4.1, 90, 190)]))
    assert [s.key for s in stats] == ["submit", "job", "custom thing", "Aggregated"]
    assert th.key_of("ai_submit", "ai_submit") == "ai_submit"


def test_slow_operation_breaks_its_threshold_by_name(tmp_path: Path) -> None:
    """What api_slow_submit does: submit p95 ~5 s against 3.5 s in the default file."""
    t = th.load(th.DEFAULT_FILE, "")
    stats = th.read_stats_csv(write_stats(tmp_path / "s.csv", [
        ("submit", "submit", 60, 0, 1.0, 5200, 5400), ("job", "job", 400, 0, 6.0, 40, 80),
        ("", "Aggregated", 460, 0, 7.0, 900, 5300)]))
    [b] = th.evaluate(stats, t)
    assert str(b) == "p95 submit: observed 5200 ms, limit <= 3500 ms -> 1700 ms over (1.5x the limit)"


def test_override_with_an_operation_name() -> None:
    t = th.load(th.DEFAULT_FILE, "p95_ms.ai_job=250;p99_ms.submit=900")
    assert t.p95_ms["ai_job"] == 250 and t.p99_ms["submit"] == 900


@pytest.mark.parametrize("key", ["POST /renders", "GET /health", "submitt"])
def test_a_latency_key_that_is_not_an_operation_is_refused(tmp_path: Path, key: str) -> None:
    with pytest.raises(ConfigError, match="not an operation.*submit, job, list"):
        th.load(th.DEFAULT_FILE, f"p95_ms.{key}=5")
    f = tmp_path / "t.toml"
    f.write_text(f'[load.p99_ms]\n"{key}" = 5\n')
    with pytest.raises(ConfigError, match="not an operation"):
        th.load(f, "")


def test_unknown_key_is_a_config_error(tmp_path: Path) -> None:
    f = tmp_path / "t.toml"
    f.write_text("[load]\nmax_fail = 1\n")
    with pytest.raises(ConfigError, match="max_fail"):
        th.load(f, "")


# ---------------------------------------------------------------------------------------
C = th.ChaosThresholds(max_failure_ratio=0.05, p95_ms=1000.0, recovery_deadline_s=60, stable_s=3, window_s=3)
T0 = 1_700_000_000.0


def scenario_history(tmp_path: Path) -> list[H.Sample]:
    # 10 s healthy, 10 s fault (half failing, slow), 4 s recovering, then healthy for 10 s
    per_second = [(20, 0, 200.0)] * 10 + [(20, 10, 2500.0)] * 10 + [(20, 2, 1500.0)] * 4 + [(20, 0, 300.0)] * 10
    return H.read_history(write_history(tmp_path / "h.csv", per_second, T0))


def test_history_reads_aggregated_rows_only(tmp_path: Path) -> None:
    samples = scenario_history(tmp_path)
    assert len(samples) == 35 and samples[0].p95_ms is None
    pts = H.points(samples)
    assert pts[0].rps == 20 and pts[0].error_rate == 0 and pts[12].error_rate == 0.5


def test_fault_impact_and_time_to_recover(tmp_path: Path) -> None:
    samples = scenario_history(tmp_path)
    imp = H.impact(samples, H.FaultWindow("db.partition", T0 + 10, T0 + 20), C)
    assert (imp.requests, imp.failures, imp.error_rate) == (200, 100, 0.5)
    assert imp.p95_ms == 2500.0
    # 2/20 fail up to T0+24: the 3 s trailing window (T0+23, T0+26] has 2/60 = 3.3 % <= 5 %, p95 300
    assert imp.time_to_recover_s == 6.0 and imp.recovered_at == T0 + 26
    assert "db.partition" in imp.describe() and "recovered after 6.0s" in imp.describe()


def test_never_recovers_within_the_history(tmp_path: Path) -> None:
    per_second = [(20, 0, 200.0)] * 5 + [(20, 10, 2500.0)] * 10
    samples = H.read_history(write_history(tmp_path / "h.csv", per_second, T0))
    imp = H.impact(samples, H.FaultWindow("redis.down", T0 + 5, T0 + 10), C)
    assert imp.time_to_recover_s is None and "never" in imp.describe()


def test_recovery_needs_the_stable_period_covered(tmp_path: Path) -> None:
    per_second = [(20, 10, 2500.0)] * 5 + [(20, 0, 200.0)] * 4
    samples = H.read_history(write_history(tmp_path / "h.csv", per_second, T0))
    assert H.recovered_at(samples, T0 + 5, C) is None  # healthy from T0+8, history ends at T0+9
    samples = H.read_history(write_history(tmp_path / "h.csv", per_second + [(20, 0, 200.0)] * 3, T0))
    assert H.recovered_at(samples, T0 + 5, C) == T0 + 8


def test_slow_but_error_free_is_not_recovered(tmp_path: Path) -> None:
    per_second = [(20, 0, 5000.0)] * 15
    samples = H.read_history(write_history(tmp_path / "h.csv", per_second, T0))
    assert H.healthy_at(samples, T0 + 10, C) is False
    assert H.recovered_at(samples, T0 + 2, C) is None


def test_missing_history_is_empty(tmp_path: Path) -> None:
    assert H.read_history(tmp_path / "nope.csv") == []


def test_timeline_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from renderchaos.load.plot import timeline_png

    samples = scenario_history(tmp_path)
    w = [H.FaultWindow("db.partition", T0 + 10, T0 + 20)]
    png = timeline_png(samples, w, tmp_path / "t.png", H.analyse(samples, w, C), error_threshold=0.05,
                       p95_threshold_ms=1000)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
