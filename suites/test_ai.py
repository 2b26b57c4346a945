"""AI provider scenarios (A §3, A §2.2-2.3): 401, model unavailable, 429 rotation, partition.

AI jobs go through the adapter's AI group (``ai_submit``, ``ai_models``); the provider is switched
through its control API at the target's ``provider_control`` URL. Jobs are read through the
harness's view of the platform (``run.job``), which also follows them in the ledger.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

import pytest

from renderchaos.errors import WaitTimeout
from renderchaos.faults.provider import ProviderBehaviour, ProviderControl
from renderchaos.platforms.base import Job, JobState
from renderchaos.scenario import ScenarioRun, runs
from renderchaos.wait import Limit, Wait, wait_for
from scenarios import ai as A
from suites.conftest import POLL, brief, ended

#: a 401 is never retried (A §3.1): one call per job, one spare for a model listing racing in
MAX_CALLS_PER_JOB_401 = 2
#: a throttled key is tried once per job, then the client rotates (A §3.3)
MAX_429_PER_JOB = 2
#: how long an AI job may take on a working provider (baseline, or another model meanwhile)
AI_JOB = Wait(30.0, "an AI job to finish on a working provider")
#: "retried until the task deadline, not earlier, not later" (A §2.3): the window around AI_TASK_TIMEOUT
EARLY_SLACK = Limit(1.0, "A §2.3: retries last until AI_TASK_TIMEOUT, not earlier")
LATE_SLACK = Limit(3.0, "A §2.3: gives up at AI_TASK_TIMEOUT, not later")
#: several attempts with backoff within the deadline: not one, not a storm (A §2.2)
MIN_ATTEMPTS, MAX_ATTEMPTS = 2, 20


@pytest.fixture
def control(scenario_run: ScenarioRun) -> Iterator[ProviderControl]:
    """The target's AI provider, for its call statistics."""
    with ProviderControl.of(scenario_run.target) as c:
        yield c


def submit_ai(run: ScenarioRun, prompt: str, model: str | None = None) -> str:
    """Submit an AI job as the scenario's tenant; followed by the ledger (lost, stuck, credits once)."""
    extra = {"model": model} if model else {}
    answer = run.platform.ai_submit(run.account, prompt, **extra)  # type: ignore[attr-defined]
    job_id = run.ledger.accept(answer, run.account, kind="ai")
    run.expect(answer.status == 202 and job_id is not None, "AI job accepted (202 with an id)", str(answer))
    assert job_id is not None
    return job_id


def models(run: ScenarioRun) -> list[Any]:
    """The AI API's model list as the tenant sees it (TargetError while it cannot answer)."""
    return run.platform.ai_models(run.account).unwrap("the AI API's model list")  # type: ignore[attr-defined]


def listed(run: ScenarioRun, model: str, available: bool) -> bool:
    return any(m.id == model and m.available is available for m in models(run))


def finishes(run: ScenarioRun, prompt: str, what: str, model: str | None = None) -> Job:
    """A job that must complete while the provider works (baseline, another model meanwhile):
    a check of its own, not the scenario's detection or recovery."""
    job_id = submit_ai(run, prompt, model)
    try:
        job = wait_for(lambda: ended(run, job_id), what=what, timeout=run.wait(AI_JOB), poll=POLL)
    except WaitTimeout as exc:
        run.fail(f"{what} within {exc.timeout:.0f}s", f"not finished; last: {exc.last}")
        raise
    run.expect(job.state is JobState.COMPLETED, what, brief(job))
    return job


def completes_after(run: ScenarioRun, prompt: str, what: str, model: str | None = None) -> Job:
    """After the remedy: a new job completes (the scenario's recovery)."""
    job_id = submit_ai(run, prompt, model)
    job = run.recovered(lambda: ended(run, job_id), what, poll=POLL)
    run.expect(job.state is JobState.COMPLETED, what, brief(job))
    return job


# ---------------------------------------------------------------------------------------
@runs(A.KEY_INVALID)
def test_provider_key_invalid_fails_clearly_without_storm(scenario_run: ScenarioRun,
                                                          control: ProviderControl) -> None:
    run = scenario_run
    run.steady_state_before()
    fault = run.inject(ProviderBehaviour.of(run.target, unauthorized=True))
    job_id = submit_ai(run, "hello with a revoked key")

    def failed_without_storm() -> Job | None:
        calls = control.stats().outcome("unauthorized")
        if calls > MAX_CALLS_PER_JOB_401:
            run.fail(f"a 401 is not retried: at most {MAX_CALLS_PER_JOB_401} provider call(s) for one job",
                     f"{calls} 401 answers so far for one job (retry storm; job {job_id})")
        return ended(run, job_id)

    job = run.detect(failed_without_storm, "the AI job to fail on the provider's 401", poll=POLL)
    run.expect(job.state is JobState.FAILED and job.error_code == "provider_unauthorized",
               "job failed with error_code provider_unauthorized", brief(job))
    msg = job.error_message or ""
    run.expect("key" in msg.lower() and "401" in msg,
               "a clear message naming the rejected API key and the 401", repr(msg[:300]))
    stats = control.stats()
    run.expect(stats.outcome("unauthorized") <= MAX_CALLS_PER_JOB_401,
               f"no retry storm: at most {MAX_CALLS_PER_JOB_401} provider call(s) for the job", stats.summary())
    run.heal(fault, "fix the provider key (provider accepts it again)")
    completes_after(run, "hello after the key fix", "a new AI job to complete with the fixed key")
    run.steady_state_after()


@runs(A.MODEL_NOT_FOUND)
def test_model_not_found_fails_and_models_list_reflects_it(scenario_run: ScenarioRun,
                                                           control: ProviderControl) -> None:
    run = scenario_run
    canary = run.platform.ai_model  # type: ignore[attr-defined]
    run.steady_state_before()
    before = models(run)
    gone = next((m.id for m in before if m.id != canary and m.available), None)
    run.expect(gone is not None, "the provider lists an available model besides the canary model",
               f"models: {before}")
    assert gone is not None
    fault = run.inject(ProviderBehaviour.of(run.target, unavailable_models=[gone]))
    run.detect(lambda: listed(run, gone, available=False), f"the AI models list to show {gone} unavailable",
               poll=POLL)
    job_id = submit_ai(run, "hello, missing model", model=gone)
    job = run.detect(lambda: ended(run, job_id), f"the AI job on {gone} to fail", poll=POLL)
    run.expect(job.state is JobState.FAILED and job.error_code == "model_not_found",
               "job failed with error_code model_not_found", brief(job))
    calls = [c for c in control.stats().generate_calls() if c.get("model") == gone]
    run.expect(len(calls) == 1, "model_not_found is not retried: one provider call",
               f"{len(calls)} call(s) for model {gone}")
    finishes(run, "other models still work", "other models unaffected: a job on another model completes meanwhile")
    run.heal(fault, f"model {gone} available again at the provider")
    run.recovered(lambda: listed(run, gone, available=True), f"the AI models list to show {gone} available again",
                  poll=POLL)
    completes_after(run, "hello, model is back", f"a job on {gone} to complete", model=gone)
    run.steady_state_after()


@runs(A.RATE_LIMIT)
def test_rate_limit_rotates_keys_and_completes(scenario_run: ScenarioRun, control: ProviderControl) -> None:
    run = scenario_run
    run.steady_state_before()
    # which key does the client use first? (the configured order is the SUT's business)
    control.reset()
    finishes(run, "which key?", "a baseline AI job to complete")
    used = [c["key"] for c in control.stats().generate_calls() if c["outcome"] == "ok"]
    run.expect(bool(used), "the provider saw the baseline call", control.stats().summary())
    throttled = used[0]
    fault = run.inject(ProviderBehaviour.of(run.target, rate_limited_keys=[throttled], retry_after_s=30.0))
    ids = [submit_ai(run, f"under quota pressure {i}") for i in range(3)]

    def all_done() -> list[Job] | None:
        hits = control.stats().key_outcome(throttled, "rate_limited")
        if hits > MAX_429_PER_JOB * len(ids):
            run.fail(f"the client rotates away from a throttled key (<= {MAX_429_PER_JOB} 429s per job)",
                     f"{hits} calls on the throttled key for {len(ids)} jobs: {control.stats().summary()}")
        found = run.terminal(*ids)
        return [found[i] for i in ids] if found else None

    jobs = run.detect(all_done, "the jobs to finish while one key is throttled", poll=POLL)
    bad = [brief(j) for j in jobs if j.state is not JobState.COMPLETED]
    run.expect(not bad, "every job completes on another key (A §3.3 key rotation)", "; ".join(bad))
    stats = control.stats()
    others = {k for k, v in stats.by_key.items() if k != throttled and v.get("ok", 0) > 0}
    run.expect(bool(others), "the provider saw successful calls on another configured key", stats.summary())
    run.expect(stats.key_outcome(throttled, "ok") == 0, "no success on the throttled key", stats.summary())
    run.heal(fault, "quota back: provider normal")
    completes_after(run, "after the quota reset", "an AI job to complete after the quota is back")
    run.steady_state_after()


_ATTEMPTS = re.compile(r"after (\d+) attempt")


@runs(A.PARTITION)
@pytest.mark.stack(**A.DEADLINE_STACK)
def test_provider_partition_backs_off_within_deadline(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    limit = A.AI_DEADLINE_S
    (partition,) = A.PARTITION.faults
    run.steady_state_before()
    finishes(run, "before the partition", "a baseline AI job to complete")
    fault = run.inject(partition)
    job_id = submit_ai(run, "hello across a partition")
    job = run.detect(lambda: ended(run, job_id), "the AI job to give up on the unreachable provider", poll=POLL)
    took = job.run_seconds
    run.expect(job.state in (JobState.FAILED, JobState.TIMEOUT)
               and job.error_code in ("provider_unavailable", "timeout"),
               "job failed provider_unavailable (or timeout)", brief(job))
    run.expect(took is not None and limit - EARLY_SLACK.seconds <= took <= limit + LATE_SLACK.seconds,
               f"retried until the task deadline AI_TASK_TIMEOUT={limit:g}s, then gave up: ended between "
               f"{limit - EARLY_SLACK.seconds:g}s and {limit + LATE_SLACK.seconds:g}s after its start (A §2.3)",
               f"ended {took if took is None else round(took, 1)}s after its start: {brief(job)}")
    m = _ATTEMPTS.search(job.error_message or "")
    attempts = int(m.group(1)) if m else None
    run.expect(attempts is not None and MIN_ATTEMPTS <= attempts <= MAX_ATTEMPTS,
               f"several attempts with backoff ({MIN_ATTEMPTS}..{MAX_ATTEMPTS} within the deadline, "
               "not one, not a storm)", f"attempts={attempts}: {brief(job)}")
    run.heal(fault, "provider route back up")
    completes_after(run, "after the partition", "a new AI job to complete after the heal")
    run.steady_state_after()
