"""Queue and worker scenarios (R §三.2, A §2)."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Iterator

import httpx
import pytest

from renderchaos.errors import TargetError, WaitTimeout
from renderchaos.faults.container import Stopped, exec_in
from renderchaos.faults.network import RouteDown
from renderchaos.faults.provider import ProviderBehaviour
from renderchaos.faults.workers import ExtraWorkers, FrozenMidTask
from renderchaos.probes.ai import AiApi, accept_ai
from renderchaos.probes.ledger import TERMINAL
from renderchaos.scenario import ScenarioRun, runs
from renderchaos.wait import Deadline, Poll, wait_for
from scenarios import ai as A
from scenarios import queue as Q

POLL = Poll(0.2, tolerate=(httpx.HTTPError, TargetError))


def _hold_absent(check: Any, what: str, seconds: float) -> None:
    """Scenario step: for ``seconds``, ``check`` must stay falsy (a hold, not a readiness wait)."""
    try:
        wait_for(check, what=what, timeout=seconds, poll=Poll(0.5))
    except WaitTimeout:
        return
    raise AssertionError(what)


def _terminal(run: ScenarioRun, job_id: str) -> dict[str, Any] | None:
    job = run.ledger.status(job_id)
    return job if job and job["status"] in TERMINAL else None


def _describe(job: dict[str, Any]) -> str:
    return f"{job['status']} {job.get('error_code')}: {str(job.get('error_message'))[:300]}"


@pytest.fixture
def ai(scenario_run: ScenarioRun) -> Iterator[AiApi]:
    run = scenario_run
    run.target.require("ai_api")
    client = AiApi.for_user(run.target.api_url, run.admin, run.user.user_id, timeout=run.timeouts.connect)
    yield client
    client.close()


# ---------------------------------------------------------------------------------------
@runs(Q.WORKER_DOWN)
def test_worker_down_jobs_wait_then_complete(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    stack = run.target.stack
    assert stack is not None
    run.steady_state_before()
    faults = [run.inject(Stopped(w, grace=5)) for w in stack.workers]
    ids = []
    for i in range(4):
        resp = run.submit(title=f"while workers are down {i}", duration=1.0)
        run.expect(resp.status_code == 202, "accepted while workers are down (202)",
                   f"{resp.status_code} {resp.text[:200]}")
        ids.append(resp.json()["id"])
    # symptom: they stay pending (not lost, not failed) for as long as the workers are down
    run.detect(lambda: all((run.ledger.status(i) or {}).get("status") == "pending" for i in ids),
               "every job submitted while the workers are down to be pending")
    hold = Deadline.after(3.0)  # scenario step: keep the workers down for 3 s
    try:
        wait_for(lambda: any((run.ledger.status(i) or {}).get("status") != "pending" for i in ids),
                 what="a job leaving pending while no worker runs", timeout=hold, poll=Poll(0.5))
        run.fail("jobs stay pending while no worker runs", "a job left pending with every worker stopped")
    except Exception as exc:  # noqa: BLE001
        if exc.__class__.__name__ != "WaitTimeout":
            raise
    for f in faults:
        run.heal(f, "restart the worker")
    run.recovered(lambda: all((run.ledger.status(i) or {}).get("status") == "completed" for i in ids),
                  "every job accepted during the outage to complete")
    run.steady_state_after()


# ---------------------------------------------------------------------------------------
def _submit_during_outage(run: ScenarioRun, n: int, label: str) -> list[str]:
    """Submit ``n`` renders while the broker is unreachable; each must be 503 broker_unavailable
    or 202 (then it must survive: the ledger follows it). Returns the accepted ids."""
    accepted = []
    for i in range(n):
        resp = run.submit(title=f"{label} {i}", duration=1.0)
        if resp.status_code == 202:
            accepted.append(resp.json()["id"])
            continue
        code = (resp.json().get("error") or {}).get("code") if resp.headers.get("content-type", "").startswith(
            "application/json") else None
        run.expect(resp.status_code == 503 and code == "broker_unavailable",
                   "503 broker_unavailable (or 202 for a durably queued job)",
                   f"{resp.status_code} {resp.text[:200]}")
    return accepted


class _Unfinished(dict):
    """Job id -> status of jobs not completed yet: falsy for wait_for, readable in its message."""

    def __bool__(self) -> bool:
        return False


def _all_completed(run: ScenarioRun, ids: list[str]) -> bool | _Unfinished:
    statuses = {i: (run.ledger.status(i) or {}).get("status", "unknown") for i in ids}
    left = _Unfinished({i: s for i, s in statuses.items() if s != "completed"})
    return True if len(left) == 0 else left


@runs(Q.BROKER_DOWN)
def test_broker_down_refuses_or_queues_durably(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    stack = run.target.stack
    assert stack is not None
    run.steady_state_before()
    started = {w.name: w.state().get("StartedAt") for w in stack.workers}

    # 1. RabbitMQ stopped
    # RabbitMQ boots slowly on a loaded machine: its start gets the stack-start deadline
    stopped = run.inject(Stopped(stack.rabbitmq, grace=5, ready_timeout=run.timeouts.stack_start))
    # symptom: a bounded answer, 503 broker_unavailable, or 202 for a job that must then survive
    accepted = run.detect(lambda: _submit_during_outage(run, 1, "broker stopped") or [None],
                          "POST /v1/videos to answer (503 broker_unavailable, or 202 queued durably) "
                          "with RabbitMQ stopped", poll=POLL)
    accepted = [i for i in accepted if i] + _submit_during_outage(run, 2, "broker stopped")
    run.heal(stopped, "start RabbitMQ (no worker restart)")
    accepted += [run.submit(title="after broker restart", duration=1.0).json()["id"]]
    run.recovered(lambda: _all_completed(run, accepted),
                  "every job accepted (202) during and after the outage to complete (an accepted job is "
                  "never lost); workers reconnected by themselves", poll=POLL)

    # 2. RabbitMQ partitioned (route down: connections cut, new ones refused)
    route = run.target.routes["rabbitmq"]
    part = run.inject(RouteDown(run.target.toxiproxy_url or "", route))
    accepted2 = run.detect(lambda: _submit_during_outage(run, 1, "broker partitioned") or [None],
                           "POST /v1/videos to answer (503 broker_unavailable, or 202 queued durably) "
                           "with RabbitMQ partitioned", poll=POLL)
    accepted2 = [i for i in accepted2 if i] + _submit_during_outage(run, 2, "broker partitioned")
    run.heal(part, "route to RabbitMQ back up (no worker restart)")
    accepted2 += [run.submit(title="after partition", duration=1.0).json()["id"]]
    run.recovered(lambda: _all_completed(run, accepted2),
                  "every job accepted (202) during and after the partition to complete (an accepted job is "
                  "never lost); workers reconnected by themselves", poll=POLL)
    now = {w.name: w.state().get("StartedAt") for w in stack.workers}
    run.expect(now == started, "workers reconnect by themselves (never restarted)",
               f"worker start times changed: {started} -> {now}")
    run.steady_state_after()


# ---------------------------------------------------------------------------------------
@runs(Q.WORKER_FROZEN)
def test_worker_frozen_task_redelivered_once(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    stack = run.target.stack
    assert stack is not None
    run.expect(len(stack.workers) >= 2, "at least two workers (one to freeze, one to take over)",
               f"{len(stack.workers)} worker(s)")
    run.steady_state_before()
    before = run.admin.user(run.user.user_id)["credits"]
    resp = run.submit(title="frozen mid-render", duration=40.0)
    run.expect(resp.status_code == 202, "render accepted (202)", f"{resp.status_code} {resp.text[:200]}")
    job_id = resp.json()["id"]
    job = wait_for(lambda: (j := run.ledger.status(job_id)) and j["status"] != "pending" and j.get("worker") and j,
                   what="the job to start on a worker", timeout=run.timeouts.job_completion, poll=POLL)
    owner = next((w for w in stack.workers if str(job["worker"]).startswith(w.env["WORKER_NAME"] + ":")), None)
    run.expect(owner is not None, "the job record names a worker of the stack", f"worker={job['worker']!r}")
    assert owner is not None
    frozen = run.inject(FrozenMidTask(owner))
    now = run.ledger.status(job_id) or {}
    run.expect(now.get("status") == "running", "the job is mid-render when its worker freezes",
               f"already {now.get('status')} (render too short for this machine?)")
    first_worker = job["worker"]

    def redelivered() -> dict[str, Any] | None:
        j = run.ledger.status(job_id)
        return j if j and j.get("worker") != first_worker else None

    moved = run.detect(redelivered, f"the task to be redelivered to another worker while {owner.name} is frozen",
                       poll=Poll(0.5, tolerate=(httpx.HTTPError, TargetError)))
    done = run.recovered(lambda: _terminal(run, job_id), "the redelivered task to finish on the other worker",
                         poll=POLL)
    run.expect(done["status"] == "completed", "the redelivered job completes", _describe(done))
    run.expect(not str(done.get("worker")).startswith(owner.env["WORKER_NAME"] + ":"),
               "completed by another worker while the first is frozen", f"worker={done.get('worker')!r}")
    cost = int(done.get("cost") or 0)
    after = run.admin.user(run.user.user_id)["credits"]
    run.expect(after == before - cost, f"charged exactly once ({cost} credits)",
               f"balance {before} -> {after} ({before - after} credits taken; attempts={moved.get('attempts')})")
    run.heal(frozen, f"unpause {owner.name}")
    # the thawed worker must not add a second output nor change the record
    _hold_absent(lambda: (j := run.ledger.status(job_id)) and (j["status"] != "completed"
                                                               or j.get("output_path") != done.get("output_path")),
                 "the job record changing after the frozen worker thawed", 5.0)
    after2 = run.admin.user(run.user.user_id)["credits"]
    run.expect(after2 == after, "no charge or refund after the thaw", f"balance {after} -> {after2}")
    live = next(w for w in stack.workers if w is not owner)
    files = [f for f in exec_in(live, ["ls", "-a", "/data/storage"]).output.split() if job_id in f]
    run.expect(files == [f"{job_id}.mp4"], "exactly one output file for the job",
               f"files for the job in /data/storage: {files}")
    run.steady_state_after()


# ---------------------------------------------------------------------------------------
def _queue_length(http: httpx.Client, queue: str) -> float:
    text = http.get("/metrics").text
    for line in text.splitlines():
        if line.startswith("celery_queue_length") and f'queue="{queue}"' in line:
            return float(line.rsplit(" ", 1)[1])
    raise TargetError(f"no celery_queue_length{{queue={queue!r}}} on /metrics")


def _ai_done(run: ScenarioRun) -> int:
    stats = run.admin.stats()
    ai = (stats.get("jobs") or {}).get("ai") or {}
    return sum(n for s, n in ai.items() if s in TERMINAL)


BURST = 80  # AI jobs; the provider takes PROVIDER_DELAY_S each
PROVIDER_DELAY_S = 1.0
USERS = 8  # the per-key rate limit (burst 10) must not shape the burst
RATE_WINDOW_S = 6.0  # scenario step: how long each drain rate is measured


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
    stack = run.target.stack
    assert stack is not None and run.target.provider_control_url
    run.steady_state_before()
    run.inject(ProviderBehaviour(run.target.provider_control_url, {"delay_s": PROVIDER_DELAY_S}))
    clients = [AiApi.for_user(run.target.api_url, run.admin,
                              run.admin.create_user(credits=10_000, name=f"backlog {i}").user_id)
               for i in range(USERS)]
    metrics = httpx.Client(base_url=run.target.api_url, timeout=run.timeouts.connect)
    try:
        for i in range(BURST):
            resp = clients[i % USERS].submit(f"burst {i}")
            run.expect(accept_ai(run.ledger, resp) is not None, "burst job accepted (202)",
                       f"{resp.status_code} {resp.text[:200]}")
        depth = run.detect(lambda: (q := _queue_length(metrics, "ai")) > Q.BACKLOG_THRESHOLD and q,
                           f"QueueBacklog condition: celery_queue_length{{queue=\"ai\"}} > {Q.BACKLOG_THRESHOLD}",
                           poll=POLL)
        base, n_base = _drain_rate(run, RATE_WINDOW_S)
        run.journal.notes.append(f"backlog {depth:.0f}; drain with {len(stack.workers)} workers: {base:.2f} jobs/s")
        run.remedy(lambda: run.inject(ExtraWorkers(stack, count=2)), "add two workers")
        left = _queue_length(metrics, "ai")
        run.expect(left >= 8, "backlog left to measure the drain with more workers",
                   f"only {left:.0f} queued after adding workers (machine faster than planned?)")
        more, n_more = _drain_rate(run, RATE_WINDOW_S)
        run.journal.notes.append(f"drain with {len(stack.workers) + 2} workers: {more:.2f} jobs/s")
        run.expect(more >= 1.4 * base,
                   "drain rate rises with worker count (>= 1.4x with twice the workers)",
                   f"{base:.2f} jobs/s ({n_base} in {RATE_WINDOW_S:g}s) with {len(stack.workers)} workers, "
                   f"{more:.2f} jobs/s ({n_more}) with {len(stack.workers) + 2}")
        run.recovered(lambda: _queue_length(metrics, "ai") <= Q.BACKLOG_THRESHOLD
                      and all(_terminal(run, i) for i in list(run.ledger.jobs)),
                      "the backlog to drain and every burst job to finish", poll=Poll(0.5, tolerate=(
                          httpx.HTTPError, TargetError)))
    finally:
        metrics.close()
        for c in clients:
            c.close()
    run.steady_state_after()


# ---------------------------------------------------------------------------------------
@runs(Q.TASK_TIMEOUT)
@pytest.mark.stack(**A.DEADLINE_STACK)
def test_task_timeout_at_the_configured_limit(scenario_run: ScenarioRun, ai: AiApi) -> None:
    run = scenario_run
    limit = A.AI_DEADLINE_S
    run.steady_state_before()
    fault = run.inject(ProviderBehaviour(run.target.provider_control_url or "", {"delay_s": 30.0}))
    resp = ai.submit("hello, slow provider")
    job_id = accept_ai(run.ledger, resp)
    run.expect(job_id is not None, "AI job accepted (202)", f"{resp.status_code} {resp.text[:200]}")
    assert job_id is not None
    job = run.detect(lambda: _terminal(run, job_id), "the AI job to end on the slow provider", poll=POLL)
    took = (datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["started_at"])).total_seconds()
    run.expect(job["status"] == "timeout" and job.get("error_code") == "timeout",
               "job status timeout, error_code timeout", _describe(job))
    run.expect(limit - 0.5 <= took <= limit + 3.0,
               f"timeout at AI_TASK_TIMEOUT={limit:g}s from the first start (not earlier, not hanging)",
               f"ended {took:.1f}s after it started")
    run.heal(fault, "provider fast again")
    resp = ai.submit("hello, fast provider")
    job_id2 = accept_ai(run.ledger, resp)
    assert job_id2 is not None
    job2 = run.recovered(lambda: _terminal(run, job_id2), "a new AI job to finish", poll=POLL)
    run.expect(job2["status"] == "completed", "a new AI job completes after the heal", _describe(job2))
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
    r = run.admin.leak(Q.LEAK_TASKS, Q.LEAK_MB)
    run.expect(r.status_code == 202, "leak tasks published (202)", f"{r.status_code} {r.text[:200]}")

    def observations() -> list[dict[str, Any]]:
        obs = run.admin.leak_observations()
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
                     poll=Poll(0.5, tolerate=(httpx.HTTPError, KeyError)))
    pids = {(o["worker"], o["pid"]) for o in obs}
    workers = {o["worker"] for o in obs}
    run.expect(len(pids) > len(workers), "children recycled (more child pids than workers)",
               f"{len(pids)} child pid(s) on {len(workers)} worker(s)")
    peak = max(o["rss_mb"] for o in obs)
    run.journal.notes.append(f"{len(obs)} leak tasks over {len(pids)} children; peak RSS {peak} MiB; "
                             f"base {base}")
    run.steady_state_after()
