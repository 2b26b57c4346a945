"""Queue and worker scenarios (R §三.2, A §2)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from renderchaos.errors import TargetError, WaitTimeout
from renderchaos.faults.container import exec_in
from renderchaos.faults.provider import ProviderBehaviour
from renderchaos.faults.spec import Freeze, Kill, Partition, Stop
from renderchaos.faults.workers import ExtraWorkers, FrozenMidTask
from renderchaos.platforms.base import ErrorKind, Job, JobState, TERMINAL
from renderchaos.scenario import ScenarioRun, runs
from renderchaos.wait import Deadline, Limit, Poll, wait_for
from scenarios import ai as A
from scenarios import queue as Q
from suites.conftest import POLL, all_completed, brief, ended, hold_absent

#: how long the workers stay down while the jobs must stay pending (a scenario step)
WORKERS_DOWN_HOLD_S = 3.0
#: the thawed worker must leave the record alone for this long (a scenario step)
THAW_HOLD_S = 5.0


# ---------------------------------------------------------------------------------------
@runs(Q.WORKER_DOWN)
def test_worker_down_jobs_wait_then_complete(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    run.steady_state_before()
    (spec,) = Q.WORKER_DOWN.faults
    down = run.inject(spec)
    ids = [run.accepted(run.submit(title=f"while workers are down {i}", duration=1.0),
                        "a render while the workers are down") for i in range(4)]
    # symptom: they stay pending (not lost, not failed) for as long as the workers are down
    run.detect(lambda: all(run.job(i) is not None and run.job(i).state is JobState.PENDING for i in ids),  # type: ignore[union-attr]
               "every job submitted while the workers are down to be pending")
    try:
        left = wait_for(lambda: [i for i in ids if (j := run.job(i)) is None or j.state is not JobState.PENDING],
                        what="a job leaving pending while no worker runs", timeout=WORKERS_DOWN_HOLD_S, poll=Poll(0.5))
        run.fail("jobs stay pending while no worker runs", f"{left} left pending with every worker stopped")
    except WaitTimeout:
        pass
    run.heal(down, "restart the workers")
    run.recovered(lambda: all_completed(run, ids), "every job accepted during the outage to complete", poll=POLL)
    run.steady_state_after()


# ---------------------------------------------------------------------------------------
@runs(Q.WORKER_KILLED)
def test_worker_killed_mid_task_nothing_lost(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    workers = run.target.containers("worker")
    run.steady_state_before()
    victim = run.accepted(run.submit(title="killed mid-render", duration=20.0, width=640, height=360), "render")
    job = wait_for(lambda: (j := run.job(victim)) is not None and j.state is JobState.RUNNING and j,
                   what="the render to be running on a worker", timeout=run.timeouts.job_completion, poll=POLL)
    owner = run.platform.worker_container(job, workers)
    index = workers.index(owner) if owner is not None else (0 if len(workers) == 1 else None)
    queued = run.accepted(run.submit(title="queued behind it", duration=1.0), "a second render")
    (spec,) = Q.WORKER_KILLED.faults
    assert isinstance(spec, Kill)
    killed = run.inject(Kill(spec.role, index=index, ready_timeout=run.timeouts.stack_start))
    run.heal(killed, "start the killed worker again")

    def settled() -> Any:
        lost = [i for i in (victim, queued) if run.job(i) is None]
        run.expect(not lost, "every accepted job still known to the platform after its worker was killed "
                   "(redelivered, failed, or waiting): never lost", f"lost: {lost}")
        return run.terminal(victim, queued)

    jobs = run.recovered(settled, "both jobs to end after the restart", poll=POLL)
    run.expect(jobs[victim].state in (JobState.COMPLETED, JobState.FAILED),
               "the killed render completes (redelivered) or fails with an error", brief(jobs[victim]))
    run.expect(jobs[queued].state is JobState.COMPLETED, "the job queued behind it completes", brief(jobs[queued]))
    run.journal.notes.append(f"killed render: {brief(jobs[victim])}, attempts {jobs[victim].attempts}")
    run.steady_state_after()


# ---------------------------------------------------------------------------------------
def _submit_during_outage(run: ScenarioRun, n: int, label: str) -> list[str]:
    """Submit ``n`` renders while the broker is unreachable; each must be refused as
    dependency_unavailable (broker) or accepted (then it must survive: the ledger follows it).
    Returns the accepted ids."""
    accepted = []
    for i in range(n):
        answer = run.submit(title=f"{label} {i}", duration=1.0)
        if answer.ok and answer.value:
            accepted.append(answer.value)
            continue
        err = answer.error
        run.expect(err is not None and err.kind is ErrorKind.DEPENDENCY_UNAVAILABLE and err.dependency == "broker"
                   and answer.status == 503,
                   "503 naming the broker (or 202 for a durably queued job)", str(answer))
    return accepted


def _started(run: ScenarioRun) -> dict[str, Any]:
    return {w.name: w.state().get("StartedAt") for w in run.target.containers("worker")}


@runs(Q.BROKER_DOWN)
def test_broker_down_refuses_or_queues_durably(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    freeze, stop, partition = Q.BROKER_DOWN.faults
    assert isinstance(stop, Stop) and isinstance(partition, Partition) and isinstance(freeze, Freeze)
    run.steady_state_before()
    # 0. the broker restarts while accepted jobs wait in its queue (workers held back): a durable
    #    queue with persistent messages keeps every one of them (A §2.1)
    held = run.inject(freeze)
    queued = [run.accepted(run.submit(title=f"queued through a broker restart {i}", duration=1.0),
                           "a render while the workers are held back") for i in range(Q.QUEUED_THROUGH_RESTART)]
    # RabbitMQ boots slowly on a loaded machine: its start gets the stack-start deadline
    restart = run.inject(Stop(stop.role, ready_timeout=run.timeouts.stack_start))
    run.heal(restart, "start RabbitMQ again with the jobs still queued")
    held.heal()  # scenario step: the workers resume and must find every queued job
    run.recovered(lambda: all_completed(run, queued),
                  f"all {len(queued)} jobs queued before the broker restart to complete (durable queue, "
                  "persistent messages)", poll=POLL)
    started = _started(run)

    # 1. RabbitMQ stopped
    stopped = run.inject(Stop(stop.role, ready_timeout=run.timeouts.stack_start))
    # symptom: a bounded answer, 503 naming the broker, or 202 for a job that must then survive
    accepted = run.detect(lambda: _submit_during_outage(run, 1, "broker stopped") or [None],
                          "a submit to answer (503 naming the broker, or 202 queued durably) with RabbitMQ stopped",
                          poll=POLL)
    accepted = [i for i in accepted if i] + _submit_during_outage(run, 2, "broker stopped")
    run.heal(stopped, "start RabbitMQ (no worker restart)")
    accepted.append(run.accepted(run.submit(title="after broker restart", duration=1.0), "a render after the restart"))
    run.recovered(lambda: all_completed(run, accepted),
                  "every job accepted (202) during and after the outage to complete (an accepted job is "
                  "never lost); workers reconnected by themselves", poll=POLL)

    # 2. RabbitMQ partitioned (route down: connections cut, new ones refused)
    part = run.inject(partition)
    accepted2 = run.detect(lambda: _submit_during_outage(run, 1, "broker partitioned") or [None],
                           "a submit to answer (503 naming the broker, or 202 queued durably) with RabbitMQ "
                           "partitioned", poll=POLL)
    accepted2 = [i for i in accepted2 if i] + _submit_during_outage(run, 2, "broker partitioned")
    run.heal(part, "route to RabbitMQ back up (no worker restart)")
    accepted2.append(run.accepted(run.submit(title="after partition", duration=1.0), "a render after the partition"))
    run.recovered(lambda: all_completed(run, accepted2),
                  "every job accepted (202) during and after the partition to complete (an accepted job is "
                  "never lost); workers reconnected by themselves", poll=POLL)
    now = _started(run)
    run.expect(now == started, "workers reconnect by themselves (never restarted)",
               f"worker start times changed: {started} -> {now}")
    run.steady_state_after()


# ---------------------------------------------------------------------------------------
@runs(Q.WORKER_FROZEN)
def test_worker_frozen_task_redelivered_once(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    workers = run.target.containers("worker")
    run.expect(len(workers) >= 2, "at least two workers (one to freeze, one to take over)",
               f"{len(workers)} worker(s)")
    run.steady_state_before()
    account = run.account
    before = run.platform.balance(account)
    job_id = run.accepted(run.submit(title="frozen mid-render", duration=40.0), "render")
    job = wait_for(lambda: (j := run.job(job_id)) is not None and j.state is not JobState.PENDING and j.worker and j,
                   what="the job to start on a worker", timeout=run.timeouts.job_completion, poll=POLL)
    owner = run.platform.worker_container(job, workers)  # type: ignore[attr-defined]
    run.expect(owner is not None, "the job record names a worker of the target", f"worker={job.worker!r}")
    frozen = run.inject(FrozenMidTask(owner))
    now = run.job(job_id)
    run.expect(now is not None and now.state is JobState.RUNNING, "the job is mid-render when its worker freezes",
               f"already {brief(now)} (render too short for this machine?)")
    first_worker = job.worker

    def redelivered() -> Job | None:
        j = run.job(job_id)
        return j if j is not None and j.worker != first_worker else None

    moved = run.detect(redelivered, f"the task to be redelivered to another worker while {owner.name} is frozen",
                       poll=Poll(0.5, tolerate=POLL.tolerate))
    done = run.recovered(lambda: ended(run, job_id), "the redelivered task to finish on the other worker", poll=POLL)
    run.expect(done.state is JobState.COMPLETED, "the redelivered job completes", brief(done))
    run.expect(run.platform.worker_container(done, workers) is not owner,  # type: ignore[attr-defined]
               "completed by another worker while the first is frozen", f"worker={done.worker!r}")
    cost = int(done.metrics.get("cost") or 0)
    after = run.platform.balance(account)
    run.expect(after == (before or 0) - cost, f"charged exactly once ({cost} credits)",
               f"balance {before} -> {after} ({(before or 0) - (after or 0)} credits taken; attempts={moved.attempts})")
    run.heal(frozen, f"unpause {owner.name}")
    # the thawed worker must not add a second output nor change the record
    hold_absent(lambda: (j := run.job(job_id)) is not None and (j.state is not JobState.COMPLETED
                                                                or j.output != done.output),
                "the job record changing after the frozen worker thawed", THAW_HOLD_S)
    after2 = run.platform.balance(account)
    run.expect(after2 == after, "no charge or refund after the thaw", f"balance {after} -> {after2}")
    live = next(w for w in workers if w is not owner)
    files = [f for f in exec_in(live, ["ls", "-a", "/data/storage"]).output.split() if job_id in f]
    run.expect(files == [f"{job_id}.mp4"], "exactly one output file for the job",
               f"files for the job in /data/storage: {files}")
    run.steady_state_after()


# ---------------------------------------------------------------------------------------
def _queue_length(run: ScenarioRun, queue: str) -> float:
    text = run.platform.metrics() or ""
    for line in text.splitlines():
        if line.startswith("celery_queue_length") and f'queue="{queue}"' in line:
            return float(line.rsplit(" ", 1)[1])
    raise TargetError(f"no celery_queue_length{{queue={queue!r}}} in the platform's metrics")


def _ai_done(run: ScenarioRun) -> int:
    stats = run.platform.admin.stats()  # type: ignore[attr-defined]
    ai = (stats.get("jobs") or {}).get("ai") or {}
    return sum(n for s, n in ai.items() if JobState(s) in TERMINAL)


BURST = 80  # AI jobs; the provider takes PROVIDER_DELAY_S each
PROVIDER_DELAY_S = 1.0
USERS = 8  # the per-key rate limit (burst 10) must not shape the burst
RATE_WINDOW_S = 6.0  # scenario step: how long each drain rate is measured
#: "drain rate rises with worker count": twice the workers must drain at least this much faster
DRAIN_GAIN = 1.4


def _drain_rate(run: ScenarioRun, seconds: float) -> tuple[float, int]:
    """Scenario step: count AI jobs finishing over ``seconds``; (jobs/s, finished)."""
    n0, t0 = _ai_done(run), time.monotonic()
    end = Deadline.after(seconds)
    try:
        wait_for(lambda: None, what="the measuring window to pass", timeout=end, poll=Poll(0.5))
    except WaitTimeout:
        pass
    n1, t1 = _ai_done(run), time.monotonic()
    return (n1 - n0) / (t1 - t0), n1 - n0


@runs(Q.BACKLOG)
def test_backlog_alert_fires_and_more_workers_drain_faster(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    assert run.target.new_workers is not None  # needs scale:worker
    n_workers = len(run.target.containers("worker"))
    run.steady_state_before()
    run.inject(ProviderBehaviour(run.platform.endpoint.urls["provider_control"], {"delay_s": PROVIDER_DELAY_S}))
    tenants = [run.open_account(f"backlog {i}") for i in range(USERS)]
    for i in range(BURST):
        acc = tenants[i % USERS]
        answer = run.platform.ai_submit(acc, f"burst {i}")  # type: ignore[attr-defined]
        run.expect(run.ledger.accept(answer, acc, kind="ai") is not None, "burst job accepted (202)", str(answer))
    depth = run.detect(lambda: (q := _queue_length(run, "ai")) > Q.BACKLOG_THRESHOLD and q,
                       f"QueueBacklog condition: celery_queue_length{{queue=\"ai\"}} > {Q.BACKLOG_THRESHOLD}",
                       poll=POLL)
    base, n_base = _drain_rate(run, RATE_WINDOW_S)
    run.journal.notes.append(f"backlog {depth:.0f}; drain with {n_workers} workers: {base:.2f} jobs/s")
    run.remedy(lambda: run.inject(ExtraWorkers(run.target.new_workers, count=2, where=run.target.name)),
               "add two workers")
    left = _queue_length(run, "ai")
    run.expect(left >= 8, "backlog left to measure the drain with more workers",
               f"only {left:.0f} queued after adding workers (machine faster than planned?)")
    more, n_more = _drain_rate(run, RATE_WINDOW_S)
    run.journal.notes.append(f"drain with {n_workers + 2} workers: {more:.2f} jobs/s")
    run.expect(more >= DRAIN_GAIN * base,
               f"drain rate rises with worker count (>= {DRAIN_GAIN}x with twice the workers)",
               f"{base:.2f} jobs/s ({n_base} in {RATE_WINDOW_S:g}s) with {n_workers} workers, "
               f"{more:.2f} jobs/s ({n_more}) with {n_workers + 2}")
    run.recovered(lambda: _queue_length(run, "ai") <= Q.BACKLOG_THRESHOLD
                  and all(ended(run, i) for i in list(run.ledger.jobs)),
                  "the backlog to drain and every burst job to finish", poll=Poll(0.5, tolerate=POLL.tolerate))
    run.steady_state_after()


# ---------------------------------------------------------------------------------------
#: "timeout at the limit, not earlier, not hanging": the window around AI_TASK_TIMEOUT
EARLY_SLACK = Limit(0.5, "A §2.3: not earlier than AI_TASK_TIMEOUT")
LATE_SLACK = Limit(3.0, "A §2.3: at the limit, not hanging")


@runs(Q.TASK_TIMEOUT)
@pytest.mark.stack(**A.DEADLINE_STACK)
def test_task_timeout_at_the_configured_limit(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    limit = A.AI_DEADLINE_S
    run.steady_state_before()
    fault = run.inject(ProviderBehaviour(run.platform.endpoint.urls["provider_control"], {"delay_s": 30.0}))
    answer = run.platform.ai_submit(run.account, "hello, slow provider")  # type: ignore[attr-defined]
    job_id = run.ledger.accept(answer, run.account, kind="ai")
    run.expect(job_id is not None, "AI job accepted (202)", str(answer))
    assert job_id is not None
    job = run.detect(lambda: ended(run, job_id), "the AI job to end on the slow provider", poll=POLL)
    took = job.run_seconds or 0.0
    run.expect(job.state is JobState.TIMEOUT and job.error_code == "timeout", "job status timeout, error_code timeout",
               brief(job))
    run.expect(limit - EARLY_SLACK.seconds <= took <= limit + LATE_SLACK.seconds,
               f"timeout at AI_TASK_TIMEOUT={limit:g}s from the first start (not earlier, not hanging)",
               f"ended {took:.1f}s after it started")
    run.heal(fault, "provider fast again")
    answer = run.platform.ai_submit(run.account, "hello, fast provider")  # type: ignore[attr-defined]
    job_id2 = run.ledger.accept(answer, run.account, kind="ai")
    assert job_id2 is not None
    job2 = run.recovered(lambda: ended(run, job_id2), "a new AI job to finish", poll=POLL)
    run.expect(job2.state is JobState.COMPLETED, "a new AI job completes after the heal", brief(job2))
    run.steady_state_after()


# ---------------------------------------------------------------------------------------
RSS_SLACK_MB = 40.0  # allocator and interpreter noise above base + max_tasks_per_child x MiB


@runs(Q.MEMORY_LEAK)
def test_memory_leak_workers_recycle_rss_bounded(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    stack = run.target.stack
    per_child = int((stack.config.env if stack else {}).get("WORKER_MAX_TASKS_PER_CHILD", 50))
    run.steady_state_before()
    t0 = time.time()
    r = run.platform.leak(Q.LEAK_TASKS, Q.LEAK_MB)  # type: ignore[attr-defined]
    run.expect(r.status_code == 202, "leak tasks published (202)", f"{r.status_code} {r.text[:200]}")

    def observations() -> list[dict[str, Any]]:
        obs = run.platform.leak_observations()  # type: ignore[attr-defined]
        return [o for o in obs if o["at"] >= t0]

    base: dict[str, float] = {}  # lowest RSS seen per worker: the child's base without the leak

    def all_ran() -> list[dict[str, Any]] | None:
        obs = observations()
        for o in obs:
            base[o["worker"]] = min(base.get(o["worker"], 1e9), o["rss_mb"] - o["held_mb"])
        worst = max(obs, key=lambda o: o["tasks_in_child"], default=None)
        if worst and worst["tasks_in_child"] > per_child:
            run.fail(f"worker children recycled after {per_child} tasks (WORKER_MAX_TASKS_PER_CHILD)",
                     f"child {worst['pid']} on {worst['worker']} ran {worst['tasks_in_child']} tasks, "
                     f"RSS {worst['rss_mb']} MiB")
        for o in obs:
            bound = base[o["worker"]] + per_child * Q.LEAK_MB + RSS_SLACK_MB
            if o["rss_mb"] > bound:
                run.fail(f"worker RSS bounded by base + {per_child} x {Q.LEAK_MB} MiB + {RSS_SLACK_MB:g} "
                         f"= {bound:.0f} MiB", f"child {o['pid']} on {o['worker']}: {o['rss_mb']} MiB after "
                         f"{o['tasks_in_child']} tasks")
        return obs if len(obs) >= Q.LEAK_TASKS else None

    obs = run.detect(all_ran, f"all {Q.LEAK_TASKS} leak tasks to report their child's RSS",
                     poll=Poll(0.5, tolerate=(*POLL.tolerate, KeyError)))
    pids = {(o["worker"], o["pid"]) for o in obs}
    workers = {o["worker"] for o in obs}
    run.expect(len(pids) > len(workers), "children recycled (more child pids than workers)",
               f"{len(pids)} child pid(s) on {len(workers)} worker(s)")
    peak = max(o["rss_mb"] for o in obs)
    run.journal.notes.append(f"{len(obs)} leak tasks over {len(pids)} children; peak RSS {peak} MiB; "
                             f"base {base}")
    run.steady_state_after()
