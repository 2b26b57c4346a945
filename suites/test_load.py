"""Load scenarios (R §三): Locust alone (load.baseline) and under catalog faults (load.chaos).

Locust runs in a subprocess (renderchaos.load.runner) and drives the target's platform adapter:
it gets the adapter and its endpoint as JSON (renderchaos.load.platform.PlatformSpec), opens one
account per Locust user through the adapter, and reports every adapter call under its
operation name (submit, job, list, download, ai_submit, ai_job). Its reports land in
reports/load/. Thresholds: renderchaos/load/thresholds.toml, or RENDERCHAOS_LOAD_THRESHOLDS /
RENDERCHAOS_LOAD_SET ("p95_ms.submit=500"). Size: RENDERCHAOS_LOAD_USERS, _RUN_TIME_S,
_PROCESSES, _HOLD_S, _CALL_TIMEOUT_S (renderchaos.load.harness.LoadSettings).

Rate limits: every Locust user has its own account, so per-tenant limits apply per simulated
client, as in production, and the platform runs with its normal settings.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from renderchaos.errors import WaitTimeout
from renderchaos.faults.provider import ProviderBehaviour
from renderchaos.load import history as H
from renderchaos.load.harness import LoadSettings, Schedule, chaos_schedule, feed_ledger, hold, now
from renderchaos.load.platform import PlatformSpec
from renderchaos.load.runner import EXIT_THRESHOLD, LoadRun, LocustProcess, run_load
from renderchaos.load.thresholds import load as load_thresholds
from renderchaos.platforms.base import Feature
from renderchaos.scenario import ScenarioRun, runs
from renderchaos.target import MissingCapability
from renderchaos.wait import Poll, Wait, wait_for
from scenarios import load as L

#: after the warm-up, how long to wait for the load to be under the chaos thresholds
WARMUP_SETTLE = Wait(60.0, "load under the chaos thresholds before the first fault")
#: Locust writing its reports after the stop file (or its own run-time cap)
LOCUST_EXIT = Wait(60.0, "Locust to stop and write its reports")


def _load_run(run: ScenarioRun, state: Any, seed: int, name: str, **kw: Any) -> LoadRun:
    s = LoadSettings.from_env()
    platform = replace(PlatformSpec.of(run.platform), timeout=s.call_timeout_s)
    return LoadRun(platform=platform, out_dir=state.reports_dir / "load", name=name,
                   users=s.users, spawn_rate=s.spawn_rate, processes=s.processes, seed=seed,
                   run_time_s=kw.pop("run_time_s", s.run_time_s), **kw)


def _groups(run: ScenarioRun) -> str:
    return ", ".join(f"{f.value} {'on' if run.platform.has(f) else 'off (adapter lacks it)'}"
                     for f in (Feature.DOWNLOAD, Feature.AI_JOBS))


@pytest.mark.load
@runs(L.BASELINE)
def test_load_baseline_meets_thresholds(scenario_run: ScenarioRun, chaos_state: Any, chaos_seed: int) -> None:
    run = scenario_run
    run.steady_state_before()
    spec = _load_run(run, chaos_state, chaos_seed, "baseline", extra_args=["--reset-stats"])
    with run.phase("load", f"Locust {spec.users} users for {spec.run_time_s:.0f}s on {spec.platform.describe()}"):
        result = run_load(spec)
    run.journal.notes.append(f"load: {result.summary()}; reports {spec.html}, {spec.stats_csv}")
    run.journal.notes.append(f"operations: {result.operations()}; optional groups: {_groups(run)}")
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


def _schedule(run: ScenarioRun) -> Schedule:
    """The catalog's faults bound to this target; the provider fault is the suite's to build."""
    (faults,) = L.CHAOS.faults
    urls = run.platform.endpoint.urls
    concrete = {L.PROVIDER_RATE_LIMIT: lambda: ProviderBehaviour(urls["provider_control"],
                                                                 {"rate_limited_keys": ["*"]})}
    schedule = chaos_schedule(run.target, faults, concrete)  # type: ignore[arg-type]
    for s in schedule.skipped:
        run.journal.notes.append(f"fault skipped: {s}")
    run.journal.extra["skipped_faults"] = schedule.skipped
    if not schedule.faults:
        raise MissingCapability(f"load.chaos: no fault of the schedule applies to this target ({'; '.join(schedule.skipped)})")
    return schedule


@pytest.mark.load
@runs(L.CHAOS)
def test_load_under_chaos_recovers_after_each_heal(scenario_run: ScenarioRun, chaos_state: Any,
                                                   chaos_seed: int) -> None:
    run = scenario_run
    settings = LoadSettings.from_env()
    schedule = _schedule(run)
    spec = _load_run(run, chaos_state, chaos_seed, "chaos", run_time_s=settings.chaos_cap_s, enforce=False)
    run.journal.notes.append(f"load.chaos on {spec.platform.describe()}: {schedule.describe()}; "
                             f"optional groups: {_groups(run)}")
    chaos = load_thresholds(spec.thresholds_file, spec.threshold_set).chaos
    windows: list[H.FaultWindow] = []
    run.steady_state_before()
    proc = LocustProcess(spec)
    try:
        proc.start()

        def healthy_now() -> bool:
            samples = H.read_history(spec.history_csv)
            return bool(samples) and samples[-1].t - samples[0].t >= settings.warmup_s \
                and H.healthy_at(samples, samples[-1].t, chaos) is True

        with run.phase("warmup", f"{spec.users} users, healthy for {settings.warmup_s:.0f}s"):
            try:
                wait_for(healthy_now, what="load running and under the chaos thresholds",
                         timeout=settings.warmup_s + run.wait(WARMUP_SETTLE), poll=Poll(1.0))
            except WaitTimeout as exc:
                run.fail("steady load under the chaos thresholds before the first fault", str(exc.last))
        for f in schedule.faults:
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
            result = proc.wait(timeout=settings.chaos_cap_s + run.wait(LOCUST_EXIT))
    finally:
        proc.kill()
        _chaos_report(run, spec, windows, chaos)
    run.journal.notes.append(f"load: {result.summary()}; reports {spec.html}, {spec.history_csv}")
    run.journal.notes.append(f"operations: {result.operations()}")
    feed_ledger(run, result)
    run.steady_state_after()


def _chaos_report(run: ScenarioRun, spec: LoadRun, windows: list[H.FaultWindow], chaos: Any) -> None:
    """Per-fault impact from the final history, into the journal (results.json) and a PNG timeline."""
    if not windows:
        return
    samples = H.read_history(spec.history_csv)
    impacts = H.analyse(samples, windows, chaos)
    for imp in impacts:
        run.journal.notes.append(f"fault {imp.describe()}")
    figures = {i.name: {"time_to_recover_s": i.time_to_recover_s, "error_rate": i.error_rate, "p95_ms": i.p95_ms,
                        "duration_s": i.duration_s, "requests": i.requests, "failures": i.failures} for i in impacts}
    run.journal.notes.append("load.chaos faults: " + json.dumps(figures))
    run.journal.extra["load_chaos_faults"] = figures
    try:
        from renderchaos.load.plot import timeline_png

        png = timeline_png(samples, windows, spec.out_dir / "chaos_timeline.png", impacts,
                           error_threshold=chaos.max_failure_ratio, p95_threshold_ms=chaos.p95_ms)
        run.journal.notes.append(f"timeline: {png}")
    except ImportError:
        run.journal.notes.append("timeline not drawn: pip install matplotlib")
