"""ScenarioRun over a fake platform: phases, optional detection, heal-on-exit, the fault audit,
the ledger's invariants and the money. No containers, no network."""

from __future__ import annotations

import pytest

from renderchaos.config import PROFILES, with_timeouts
from renderchaos.errors import FaultHealError, ScenarioFailed
from renderchaos.platforms.base import JobState
from renderchaos.scenario import Runbook, Scenario, ScenarioRun
from renderchaos.target import Target
from renderchaos.wait import Limit, Wait
from tests.unit.fakes import FakeFault, FakePlatform, spec_for

SC = Scenario(id="unit.sample", title="a sample", runbook=Runbook("R", "§一.3 渲染超时"), tier="gate",
              symptom="s", remedy="r", detect=Wait(2.0), recover=Wait(2.0))
FAST = with_timeouts(PROFILES["gate"], 0.02)  # job_completion 1.8 s, recovery 1.2 s


def make_run(platform: FakePlatform | None = None, scenario: Scenario = SC) -> ScenarioRun:
    platform = platform or FakePlatform()
    return ScenarioRun(scenario, Target("fake", "external", platform), FAST, sample=False)


def test_a_clean_run_records_phases_times_and_invariants() -> None:
    run = make_run()
    run.steady_state_before()
    fault = run.inject(FakeFault())
    job_id = run.accepted(run.submit(title="x"), "render")
    run.detect(lambda: run.job(job_id) is not None, "the job to be known")
    run.heal(fault)
    inv = run.steady_state_after()
    names = [p.name for p in run.journal.phases]
    assert names == ["steady_state_before", "inject", "detect", "remedy", "steady_state_after"]
    assert all(p.ok for p in run.journal.phases)
    assert run.journal.time_to_detect_s is not None and run.journal.time_to_recover_s is not None
    assert inv.accepted == 1 and inv.lost == 0 and inv.canary_ok is True
    assert run.journal.faults_active == 0 and run.journal.faults[0].healed_at is not None
    assert run.journal.ledger["completed"] == 1 and run.journal.ledger["credits_checked"] == 1
    assert run.journal.ledger["balances_checked"] == 1
    assert fault.calls == ["inject", "heal", "heal"]  # healed by the remedy, then the idempotent safety net


def test_without_a_detect_phase_time_to_detect_is_null_not_zero() -> None:
    run = make_run()
    run.steady_state_before()
    run.inject(FakeFault())
    run.steady_state_after()
    assert run.journal.time_to_detect_s is None
    assert "detect" not in [p.name for p in run.journal.phases]
    assert run.journal.to_dict()["time_to_detect_s"] is None


def test_detected_records_the_first_observation_only() -> None:
    run = make_run()
    run.inject(FakeFault())
    run.detected()
    first = run.journal.time_to_detect_s
    run.detected()
    assert first is not None and run.journal.time_to_detect_s == first


def test_a_fault_that_cannot_be_healed_fails_the_scenario_naming_it() -> None:
    run = make_run()
    run.steady_state_before()
    run.inject(FakeFault("route db down", fail_heal=5))
    with pytest.raises(FaultHealError, match="route db down"):
        run.steady_state_after()
    assert run.journal.faults_active == 1
    assert run.journal.to_dict()["faults_active_at_end"] == 1
    assert "still active" in (run.journal.faults[0].heal_error or "")


def test_close_heals_what_a_failing_test_left_injected() -> None:
    run = make_run()
    fault = run.inject(FakeFault())
    errors = run.close()  # the test failed before its steady state after
    assert errors == [] and fault.calls == ["inject", "heal"] and run.journal.faults_active == 0


def test_close_reports_faults_still_active() -> None:
    run = make_run()
    run.inject(FakeFault("broker stopped", fail_heal=5))
    errors = run.close()
    assert len(errors) == 1 and "broker stopped" in errors[0] and run.journal.faults_active == 1


def test_a_spec_is_bound_to_the_target_when_injected() -> None:
    fault = FakeFault("bound")
    run = make_run()
    assert run.inject(spec_for(fault)) is fault and fault.calls == ["inject"]


def test_a_symptom_not_seen_fails_with_the_scenario_and_runbook() -> None:
    run = make_run()
    with pytest.raises(ScenarioFailed) as info:
        run.detect(lambda: False, "something that never happens", timeout=0.2)
    msg = str(info.value)
    assert "[unit.sample]" in msg and "§一.3" in msg and "expected: symptom within" in msg


def test_lost_stuck_duplicated_and_the_money_fail_the_steady_state() -> None:
    p = FakePlatform()
    run = make_run(p)
    run.steady_state_before()
    lost = run.accepted(run.submit(title="lost"), "r")
    stuck = run.accepted(run.submit(title="stuck"), "r")
    dup = run.accepted(run.submit(title="dup"), "r")
    p.lose.add(lost)
    p.jobs[stuck] = [JobState.RUNNING]
    p.charges[dup] = (2, 0)
    p.balances[run.account.id] -= 7  # money moved without a ledger row
    with pytest.raises(ScenarioFailed) as info:
        run.steady_state_after()
    observed = str(info.value)
    assert f"lost: 1 ({lost}" in observed
    assert f"stuck: 1 ({stuck}" in observed
    assert f"duplicated: 1 ({dup}: charged 2x" in observed
    assert "money moved without a ledger row" in observed
    inv = run.journal.invariants
    assert (inv.lost, inv.stuck, inv.duplicated) == (1, 1, 1) and inv.credit_errors == 1


def test_an_unhealthy_platform_fails_the_steady_state_before() -> None:
    p = FakePlatform()
    p.healthy = False
    run = make_run(p)
    with pytest.raises(ScenarioFailed, match="failing \\['database'\\]"):
        run.steady_state_before()


def test_waits_scale_with_the_factor_and_limits_never_do() -> None:
    doubled = with_timeouts(PROFILES["gate"], 2.0)
    assert doubled.wait(Wait(30.0)) == 60.0
    assert doubled.timeouts.job_completion == 2 * PROFILES["gate"].timeouts.job_completion
    assert not hasattr(Limit(5.0), "scaled")  # a limit has no way to be scaled
    run = ScenarioRun(SC, Target("fake", "external", FakePlatform()), doubled, sample=False)
    assert run.detect_wait == 4.0 and run.recover_wait == 4.0  # Scenario waits of 2 s, doubled


def test_the_sampler_records_latency_and_queue_depth() -> None:
    run = ScenarioRun(SC, Target("fake", "external", FakePlatform()), FAST, sample=True)
    run._sampler.interval = 0.01  # type: ignore[union-attr]
    run.steady_state_before()
    run.accepted(run.submit(title="x"), "r")
    from renderchaos.wait import Poll, wait_for

    wait_for(lambda: len(run._sampler.latency) >= 3, what="three samples", timeout=5, poll=Poll(0.01))  # type: ignore[union-attr]
    run.close()
    samples = run.journal.samples
    assert samples is not None and samples["series"]["latency"][0][2] == 200
    assert "queue_depth" in samples["series"]
