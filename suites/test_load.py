"""Load scenarios (R §三): Locust alone (load.baseline) and under catalog faults (load.chaos).

Locust runs in a subprocess (renderchaos.load.runner); its reports land in reports/load/.
Thresholds: renderchaos/load/thresholds.toml, or RENDERCHAOS_LOAD_THRESHOLDS / RENDERCHAOS_LOAD_SET.
Size: RENDERCHAOS_LOAD_USERS, _RUN_TIME_S, _PROCESSES, _HOLD_S (renderchaos.load.harness.LoadSettings).

Rate limits: every Locust user creates its own account and API key through the admin API, so
the per-key limit (5 r/s, burst 10) applies per simulated client, as in production, and the
stack runs with its normal settings; the harness address 127.0.0.1 is exempt from the per-IP
flood limit on the reference stack.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from renderchaos.load import history as H
from renderchaos.load.harness import LoadSettings, chaos_schedule, feed_ledger, hold, now
from renderchaos.load.runner import EXIT_THRESHOLD, LoadRun, LocustProcess, run_load
from renderchaos.scenario import ScenarioRun, runs
from renderchaos.wait import Poll, wait_for
from renderchaos.errors import WaitTimeout
from scenarios import load as L


def _load_run(run: ScenarioRun, state: Any, seed: int, name: str, **kw: Any) -> LoadRun:
    s = LoadSettings.from_env()
    return LoadRun(host=run.target.api_url, admin_token=run.target.admin_token, out_dir=state.reports_dir / "load",
                   name=name, users=s.users, spawn_rate=s.spawn_rate, processes=s.processes, seed=seed,
                   run_time_s=kw.pop("run_time_s", s.run_time_s), **kw)


@pytest.mark.load
@runs(L.BASELINE)
def test_load_baseline_meets_thresholds(scenario_run: ScenarioRun, chaos_state: Any, chaos_seed: int) -> None:
    run = scenario_run
    run.steady_state_before()
    spec = _load_run(run, chaos_state, chaos_seed, "baseline", extra_args=["--reset-stats"])
    with run.phase("load", f"Locust {spec.users} users for {spec.run_time_s:.0f}s"):
        result = run_load(spec)
    run.journal.notes.append(f"load: {result.summary()}; reports {spec.html}, {spec.stats_csv}")
    run.journal.notes.append(f"thresholds: {result.thresholds.describe()}")
    feed_ledger(run, result)
    run.expect(not result.breaches,
               f"every load threshold holds ({result.thresholds.describe()})",
               lambda: "threshold(s) broken: " + "; ".join(map(str, result.breaches)) + f" [{result.summary()}]")
    run.expect(result.exit_code == 0, "Locust exits 0",
               lambda: f"Locust exited {result.exit_code}"
                       + (" (threshold)" if result.exit_code == EXIT_THRESHOLD else "")
                       + f"; log {spec.log_file}:\n{result.log_tail()}")
    run.steady_state_after()


@pytest.mark.load
@runs(L.CHAOS)
def test_load_under_chaos_recovers_after_each_heal(scenario_run: ScenarioRun, chaos_state: Any,
                                                   chaos_seed: int) -> None:
    run = scenario_run
    settings = LoadSettings.from_env()
    spec = _load_run(run, chaos_state, chaos_seed, "chaos", run_time_s=settings.chaos_cap_s, enforce=False)
    chaos = None
    windows: list[H.FaultWindow] = []
    schedule = chaos_schedule(run.target)
    run.expect(bool(schedule), "faults to inject on this target", "none of the scheduled faults is available")
    run.steady_state_before()
    proc = LocustProcess(spec)
    try:
        proc.start()
        from renderchaos.load.thresholds import load as load_thresholds

        chaos = load_thresholds().chaos

        def healthy_now() -> bool:
            samples = H.read_history(spec.history_csv)
            return bool(samples) and samples[-1].t - samples[0].t >= settings.warmup_s \
                and H.healthy_at(samples, samples[-1].t, chaos) is True

        with run.phase("warmup", f"{spec.users} users, healthy for {settings.warmup_s:.0f}s"):
            try:
                wait_for(healthy_now, what="load running and under the chaos thresholds",
                         timeout=settings.warmup_s + 60, poll=Poll(1.0))
            except WaitTimeout as exc:
                run.fail("steady load under the chaos thresholds before the first fault", str(exc.last))
        for f in schedule:
            fault = f.make()
            t_inject = now()
            run.inject(fault)
            run.expect(hold(proc, settings.hold_s, f"{f.name} is held"),
                       f"Locust keeps running through {f.name}", f"Locust exited; log {spec.log_file}")
            t_heal = now()
            run.heal(fault, f"{f.name}: {f.remedy}")
            windows.append(H.FaultWindow(f.name, t_inject, t_heal))
            run.recovered(lambda: H.recovered_at(H.read_history(spec.history_csv), t_heal, chaos) is not None,
                          f"after {f.name}: error rate <= {chaos.max_failure_ratio:.0%} over {chaos.window_s:.0f}s "
                          f"and p95 <= {chaos.p95_ms:.0f} ms, stable for {chaos.stable_s:.0f}s",
                          timeout=chaos.recovery_deadline_s + chaos.stable_s + 5, poll=Poll(1.0))
        proc.stop()
        with run.phase("load", "Locust stops and writes its reports"):
            result = proc.wait(timeout=settings.chaos_cap_s + 60)
    finally:
        proc.kill()
        _chaos_report(run, spec, windows, chaos)
    run.journal.notes.append(f"load: {result.summary()}; reports {spec.html}, {spec.history_csv}")
    feed_ledger(run, result)
    run.steady_state_after()


def _chaos_report(run: ScenarioRun, spec: LoadRun, windows: list[H.FaultWindow], chaos: Any) -> None:
    """Per-fault impact from the final history, into the journal (results.json) and a PNG timeline."""
    if chaos is None or not windows:
        return
    samples = H.read_history(spec.history_csv)
    impacts = H.analyse(samples, windows, chaos)
    for imp in impacts:
        run.journal.notes.append(f"fault {imp.describe()}")
    run.journal.notes.append("load.chaos faults: " + json.dumps(
        {i.name: {"time_to_recover_s": i.time_to_recover_s, "error_rate": i.error_rate, "p95_ms": i.p95_ms,
                  "duration_s": i.duration_s, "requests": i.requests, "failures": i.failures} for i in impacts}))
    try:
        from renderchaos.load.plot import timeline_png

        png = timeline_png(samples, windows, spec.out_dir / "chaos_timeline.png", impacts,
                           error_threshold=chaos.max_failure_ratio, p95_threshold_ms=chaos.p95_ms)
        run.journal.notes.append(f"timeline: {png}")
    except ImportError:
        run.journal.notes.append("timeline not drawn: pip install matplotlib")
