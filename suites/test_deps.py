"""Dependency scenarios: Postgres and Redis (R §四, A §4, A §5) and the backup drill (R §六.2)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from renderchaos.faults.db import BulkJobs, DatabaseDropped, HeldConnections, PgAccess, RedisAtMaxmemory, pg_dump
from renderchaos.faults.spec import Partition
from renderchaos.platforms.base import Account, Answer, Endpoint, ErrorKind, JobState, RenderRequest, timed
from renderchaos.probes import db as dbprobe
from renderchaos.scenario import ScenarioRun, runs
from renderchaos.target import MissingCapability
from renderchaos.wait import Limit, Poll, Wait, wait_for
from scenarios import deps as D
from suites.conftest import POLL, brief

#: a request to the API while a dependency is down must be answered within this
FAST_FAIL = Limit(5.0, "R §四.2: fail fast while the database is down")
#: DB_POOL_TIMEOUT (3 s, refstack default) plus the request's own work
POOL_FAIL = Limit(3.0 + 3.0, "A §4.1: DB_POOL_TIMEOUT, then 503")
#: upper bound on one request while the database link is degraded (db.partition)
PARTITION_BOUND = Limit(20.0, "R §四.2: requests answer within a bound, none hangs")
#: no statement of the stack may stay active longer than this under a degraded link
STATEMENT_BOUND = Limit(10.0, "R §三.3: statement_timeout")
#: with Redis down (fail open) a request is still served this fast
FAIL_OPEN_ANSWER = Limit(3.0, "R §四.3: RATE_LIMIT_FAIL_MODE=open serves without waiting on Redis")
#: the list of a user's renders on the 200k-job table
LIST_ON_BIG_TABLE = Limit(2.0, "R §三.3: the user's job list stays fast on a big table")
#: a hot query, on the 200k table, must not take longer than this (measured by Postgres)
HOT_QUERY_TIME = Limit(0.25, "R §三.3: a hot query served by an index takes milliseconds")
#: a hot query may read at most this many table rows / shared buffer accesses: an index serves a
#: page (LIMIT 21..100) or one user's jobs (100 here) from a few hundred; a Seq Scan or a walk of
#: the wrong index with a filter reads tens of thousands (measured: 1708 rows at most, 409 buffers)
HOT_QUERY_ROWS = 5_000  # 2.5 % of the table
HOT_QUERY_BUFFERS = 2_000
#: a client that never gets an answer is cut here; anything near it counts as hung
CLIENT_CUTOFF = Wait(40.0, "an answer to one request to the API")
#: clients of the scenarios that do not time the API's failure (rate limits, reads)
CLIENT = Wait(15.0, "an answer to one request to the API")
#: db.down's clients: a request to a stopped database gets its answer well before this
OUTAGE_CLIENT = Wait(30.0, "an answer to one request while the database is down")
#: db.pool_exhausted: how long the pool stays held (a scenario step, longer than DB_POOL_TIMEOUT + the checks)
HOLD_S = 12
#: the hold's connections all checked out / the first request refused / the cancel waiting on the lock
HOLD_TAKES = Wait(10.0, "every pooled connection checked out by the hold")
SYMPTOM_SEEN = Wait(10.0, "the first request during the hold")
LOCK_WAIT_SEEN = Wait(10.0, "the cancel to wait on the credits row lock")
#: after the client's own cutoff, the thread that sent the request has this long to end
THREAD_ENDS = Wait(5.0, "the request thread to end after its client cut off")
#: a tenant's rate-limit bucket refills (burst 10 at the default rate) within this
BUCKET_REFILL = Wait(10.0, "the tenant's rate-limit bucket to refill")
#: an answer at least this slow, while a toxic is on the database route, is the degraded link seen
SLOW_ANSWER_S = 1.0
#: a writer may set a key's TTL in a second command within this (R §八: every key has a TTL)
TTL_GRACE = Limit(1.0, "R §八 1.: the TTL set with the write (or right after it)")

ROWS = 200_000
FILLER_USERS = 2_000


# ------------------------------------------------------------------------------- helpers
def send(run: ScenarioRun, client: httpx.Client, ep: Endpoint) -> Answer[Any]:
    """One timed request, its refusal normalised by the platform's adapter."""
    return timed(lambda: client.request(ep.method, ep.path, json=ep.json), run.platform.classify)


def clients(run: ScenarioRun, accounts: list[Account | None], timeout: Wait = CLIENT_CUTOFF) -> list[httpx.Client]:
    return [run.platform.http(a, timeout=run.wait(timeout)) for a in accounts]


def burst(run: ScenarioRun, cs: list[httpx.Client], ep: Endpoint, per_client: int) -> list[Answer[Any]]:
    """``per_client`` concurrent requests per client; the answers in any order."""
    calls = [c for c in cs for _ in range(per_client)]
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(lambda c: send(run, c, ep), calls))


def completed_job(run: ScenarioRun, title: str) -> str:
    job_id = run.accepted(run.submit(title=title, duration=1.0), f"a render in the steady state ({title})")
    job = run.ledger.wait_terminal(job_id, run.timeouts.job_completion, f"{title} to finish")
    run.expect(job.state is JobState.COMPLETED, f"{title} completed", brief(job))
    return job_id


def refused_by(answer: Answer[Any], role: str) -> bool:
    """A clean refusal naming the dependency: 503 dependency_unavailable (``role``)."""
    err = answer.error
    return (answer.status == 503 and err is not None and err.kind is ErrorKind.DEPENDENCY_UNAVAILABLE
            and err.dependency == role)


def db_conn(run: ScenarioRun) -> Any:
    """A direct connection to the platform's database (autocommit, not through the fault proxy)."""
    import psycopg

    dsn = run.target.database_dsn
    if not dsn:
        raise MissingCapability(f"target {run.target.name!r} has no database_dsn")
    return psycopg.connect(dsn, autocommit=True)


def cache_client(run: ScenarioRun) -> Any:
    """A direct Redis client of the ``cache`` role's container (the runbooks' cache is Redis)."""
    from renderchaos.provisioning.stack.services import redis_client

    cache = run.target.container("cache")
    client = getattr(cache, "client", None)
    if client is not None:
        return client()
    address = getattr(cache, "address", None)  # a compose stack's service: its host and port
    if address is None:
        raise MissingCapability(f"target {run.target.name!r}: its cache container {cache.name!r} has no address "
                                "the harness can reach directly (a stack renderchaos started has one)")
    return redis_client(*address)


def api_started(run: ScenarioRun) -> list[Any]:
    return [c.state().get("StartedAt") for c in run.target.containers("api")]


def hot_queries(run: ScenarioRun) -> dict[str, str]:
    queries = getattr(run.platform, "hot_queries", None)
    if queries is None:
        raise MissingCapability(f"platform {run.platform.name} does not name its hot queries (hot_queries)")
    return queries()


# =======================================================================================
@runs(D.DB_DOWN)
def test_db_down_fast_503_then_recovers_without_api_restart(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    (stop,) = D.DB_DOWN.faults
    run.steady_state_before()
    started = api_started(run)
    job_id = completed_job(run, "before the database goes down")
    # Several tenants (per-key limits), all prepared now: nothing may touch the API's pools during
    # the outage except the one request we time, so a stale pool shows up after the restart.
    readers = [run.open_account(f"db.down reader {i}", credits=100) for i in range(4)]
    owner, *others = clients(run, [run.account, *readers], timeout=OUTAGE_CLIENT)
    read = run.platform.light_read()  # type: ignore[attr-defined]
    try:
        # warm every API process's pool (the API's processes share the listening socket)
        burst(run, others, read, 3)
        down = run.inject(stop)
        first = send(run, owner, run.platform.job_endpoint(job_id))  # type: ignore[attr-defined]
        run.expect(refused_by(first, "database") and first.elapsed <= FAST_FAIL.seconds,
                   f"503 naming the database (database_unavailable) within {FAST_FAIL} while it is down", str(first))
        try:
            run.detect(lambda: (h := run.platform.health()).status == 503 and "database" in h.failing and h,
                       "health 503 with the database among the failing dependencies")
        finally:
            h = run.platform.health()
            run.journal.notes.append(f"health while the database is down: {h.status} failing={list(h.failing)}")
        run.heal(down, "start the database (and wait until it accepts connections)")
        # the API was not restarted: the very first requests after the database is back must succeed
        answers = burst(run, [owner, *others], read, 3)
        bad = [a for a in answers if not a.ok]
        run.expect(not bad, "every request after the database is back succeeds (pool pre-ping, no API restart)",
                   f"{len(bad)}/{len(answers)} failed: " + "; ".join(map(str, bad[:5])))
        run.recovered(lambda: run.platform.job(run.account, job_id).ok, "the job readable again", poll=POLL)
        run.expect(api_started(run) == started, "the API container was not restarted",
                   f"StartedAt {started} -> {api_started(run)}")
    finally:
        for c in (owner, *others):
            c.close()
    run.steady_state_after()


# =======================================================================================
@runs(D.DB_PARTITION)
def test_db_partition_bounded_latency_and_recovery(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    run.steady_state_before()
    job_id = completed_job(run, "before the partition")
    readers = clients(run, [run.open_account(f"db.partition reader {i}", credits=100) for i in range(4)])
    read = run.platform.light_read()  # type: ignore[attr-defined]
    try:
        burst(run, readers, read, 2)  # warm the pools of every API process
        for spec in D.DB_PARTITION_FAULTS:
            label = spec.describe()
            fault = run.inject(spec)
            answers = burst(run, readers, read, 2)
            # the symptom, first seen by our own measurement: a slow answer or a clean refusal
            if any(a.status is None or not a.ok or a.elapsed >= SLOW_ANSWER_S for a in answers):
                run.detected()
            slow = [a for a in answers if a.status is None or a.elapsed > PARTITION_BOUND.seconds]
            five = [a for a in answers if a.status is not None and a.status >= 500 and not refused_by(a, "database")]
            run.journal.notes.append(f"{label}: " + ", ".join(sorted(str(a) for a in answers)))
            run.expect(not slow, f"every request answered within {PARTITION_BOUND} during '{label}'",
                       "; ".join(map(str, slow[:4])))
            run.expect(not five, f"success or a clean 503 naming the database during '{label}', never another 5xx",
                       "; ".join(map(str, five[:4])))
            # no hung backend: nothing of the stack runs longer than the statement timeout
            with db_conn(run) as conn:
                hung = dbprobe.long_active(conn, STATEMENT_BOUND.seconds)
            run.expect(not hung, f"no statement of the platform active > {STATEMENT_BOUND}", str(hung))
            run.heal(fault, f"heal: {label}")
            # recovery right after the heal: the first requests succeed (pre-ping drops dead connections)
            after = burst(run, readers, read, 2)
            bad = [a for a in after if not a.ok]
            run.expect(not bad, f"every request right after healing '{label}' succeeds",
                       f"{len(bad)}/{len(after)}: " + "; ".join(map(str, bad[:4])))
        # A cut nobody notices: the link drops while the API is idle and comes back before any
        # request. Every pooled connection is dead now, and no failed request has told the pool:
        # the first requests afterwards must still succeed (pre-ping on checkout, R §四.2).
        cut = run.inject(next(s for s in D.DB_PARTITION_FAULTS if isinstance(s, Partition)))
        run.heal(cut, "the link back before any request")
        after = burst(run, readers, read, 2)
        bad = [a for a in after if not a.ok]
        run.journal.notes.append("after a cut while idle: " + ", ".join(sorted(str(a) for a in after)))
        run.expect(not bad, "every request after a cut the API did not see succeeds (stale pooled connections "
                   "replaced on checkout)", f"{len(bad)}/{len(after)}: " + "; ".join(map(str, bad[:4])))
        run.recovered(lambda: run.platform.job(run.account, job_id).ok, "the job readable after the heal", poll=POLL)
    finally:
        for c in readers:
            c.close()
    run.steady_state_after()


# =======================================================================================
@runs(D.DB_POOL_EXHAUSTED)
@pytest.mark.stack(env={"WEB_CONCURRENCY": "1"})  # reference stack: one API process, whose pool we hold
def test_db_pool_exhausted_fails_fast_no_leak(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    run.steady_state_before()
    job_id = completed_job(run, "before the pool is exhausted")
    (owner,) = clients(run, [run.account])
    job_ep = run.platform.job_endpoint(job_id)  # type: ignore[attr-defined]
    api_sessions = run.platform.db_application("api")  # type: ignore[attr-defined]
    try:
        hold = run.inject(HeldConnections(run.platform, seconds=HOLD_S))
        held = hold.held.count
        # wait until the hold has every connection (its thread starts after the answer)
        with db_conn(run) as conn:
            wait_for(lambda: dbprobe.sessions_by_state(conn, api_sessions).get("idle", 0) >= held,
                     what=f"{held} idle pooled API connections held", timeout=run.wait(HOLD_TAKES), poll=Poll(0.1))
        # the symptom: a request refused, or one that waited for a connection (anything but a quick success)
        first = run.detect(lambda: ((a := send(run, owner, job_ep)).status != 200 or a.elapsed > POOL_FAIL.seconds)
                           and a, "a request refused (or kept waiting) while the pool is held", timeout=SYMPTOM_SEEN)
        run.journal.notes.append(f"request during the hold: {first}")
        run.expect(refused_by(first, "database") and first.elapsed <= POOL_FAIL.seconds,
                   f"503 naming the database (database_unavailable) within {POOL_FAIL}", str(first))
        with db_conn(run) as conn:
            leak = dbprobe.idle_in_transaction(conn)
            states = dbprobe.sessions_by_state(conn)
        run.journal.notes.append(f"pg_stat_activity during the hold: {states}")
        run.expect(not leak, "no session idle in transaction while the pool is held", str(leak))
        run.heal(hold, "the held connections are released")
        run.recovered(lambda: send(run, owner, job_ep).ok, "requests served again", poll=POLL)
        with db_conn(run) as conn:
            leak = dbprobe.idle_in_transaction(conn)
        run.expect(not leak, "no session idle in transaction after the release (A §4.1 step 4)", str(leak))
    finally:
        owner.close()
    run.steady_state_after()


# =======================================================================================
@runs(D.DB_DEADLOCK)
def test_db_deadlock_cancel_is_retried(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    run.steady_state_before()
    (owner,) = clients(run, [run.account])
    try:
        for attempt in range(3):  # the harness's side must not be the victim; retry the setup if it was
            job_id = run.accepted(run.submit(title=f"deadlock victim {attempt}", duration=30.0), "render")
            run.mark_injected("a transaction locks the owner's credits row, then the job its cancel holds")
            outcome = _provoke_deadlock(run, owner, job_id)
            if outcome is not None:
                break
        else:
            run.fail("the API's cancel chosen as the deadlock victim", "the harness's transaction lost 3 times")
        answer, harness_note = outcome
        run.journal.notes.append(f"cancel under deadlock: {answer}; harness side: {harness_note}")
        run.expect(answer.status in (200, 409, 503), "the cancel answers 200 (retried) or a clean 409/503, never 500",
                   str(answer))
        run.expect(answer.status == 200, "the deadlocked cancel retried transparently: 200 cancelled", str(answer))
        run.recovered(lambda: (j := run.job(job_id)) is not None and j.state is JobState.CANCELLED,
                      "the job is cancelled", poll=POLL)
    finally:
        owner.close()
    run.steady_state_after()


def _provoke_deadlock(run: ScenarioRun, owner: httpx.Client, job_id: str) -> tuple[Answer[Any], str] | None:
    """The platform's deadlock recipe (refstack README 'Deadlocks'): lock the owner's credits
    here, cancel J (locks J, waits for credits), then update J here. Returns the cancel's
    answer, or None if Postgres chose the harness as the victim."""
    import psycopg

    lock_first, then_update = run.platform.deadlock_statements(run.account, job_id)  # type: ignore[attr-defined]
    cancel = run.platform.cancel_endpoint(job_id)  # type: ignore[attr-defined]
    api_sessions = run.platform.db_application("api")  # type: ignore[attr-defined]
    result: dict[str, Answer[Any]] = {}
    with db_conn(run) as conn:
        # the API's backends check for deadlocks after deadlock_timeout (1 s); ours much later, so the
        # cycle is found on the API's side and its retry is what we test
        conn.execute("SET deadlock_timeout = '20s'")
        conn.execute("BEGIN")
        conn.execute(*lock_first)
        t = threading.Thread(target=lambda: result.setdefault("cancel", send(run, owner, cancel)),
                             name="deadlock-cancel", daemon=True)
        t.start()
        try:
            waiters = run.detect(lambda: dbprobe.lock_waiters(conn, api_sessions),
                                 "the cancel waiting for the credits row lock", timeout=LOCK_WAIT_SEEN, poll=Poll(0.02))
            run.journal.notes.append(f"API waiting: {waiters}")
            conn.execute(*then_update)
            conn.execute("COMMIT")
            note = "committed"
        except psycopg.errors.DeadlockDetected:
            conn.execute("ROLLBACK")
            note = "victim"
        finally:
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.execute("ROLLBACK")
    wait_for(lambda: not t.is_alive(), what="the cancel request to answer", timeout=run.wait(CLIENT_CUTOFF) + run.wait(THREAD_ENDS),
             poll=Poll(0.05))
    if note == "victim" and result["cancel"].status == 200:
        return None
    return result["cancel"], note


# =======================================================================================
@runs(D.DB_SLOW_QUERY)
def test_db_slow_query_hot_queries_read_little(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    dsn = run.target.database_dsn
    assert dsn, "the scenario needs the database capability"
    queries = hot_queries(run)
    run.steady_state_before()
    completed_job(run, "the tenant's one render")  # the scenario's tenant: a user with one job
    t0 = time.monotonic()
    fill = run.inject(BulkJobs(run.platform, dsn, rows=ROWS, filler_users=FILLER_USERS))
    run.journal.notes.append(f"{ROWS} jobs inserted and analyzed in {time.monotonic() - t0:.1f}s")
    users = {f"a user with {ROWS // FILLER_USERS} jobs": fill.users["many"],
             "a user with 3 old jobs": fill.users["few"], "the tenant (one recent job)": run.account.id}
    costs: dict[str, dbprobe.QueryCost] = {}
    with db_conn(run) as conn:
        for name, sql in queries.items():
            for who, user_id in (users.items() if "%(user_id)s" in sql else [("", None)]):
                costs[f"{name}{f' ({who})' if who else ''}"] = dbprobe.explain_cost(conn, sql, {"user_id": user_id})
    for name, cost in costs.items():
        run.journal.notes.append(f"{name}: {cost}")
    run.journal.extra["hot_queries"] = {n: {"rows_read": c.rows_read, "buffers": c.buffers, "ms": round(c.ms, 2)}
                                        for n, c in costs.items()}
    heavy = {n: c for n, c in costs.items() if c.rows_read > HOT_QUERY_ROWS or c.buffers > HOT_QUERY_BUFFERS}
    run.expect(not heavy, f"every hot query reads at most {HOT_QUERY_ROWS} rows and {HOT_QUERY_BUFFERS} buffers of the "
               f"{ROWS}-job table, for users with few and many jobs (R §三.3: indexes on user_id / status / "
               "created_at)", "; ".join(f"{n}: {c}" for n, c in heavy.items()))
    slow = {n: c for n, c in costs.items() if c.ms > HOT_QUERY_TIME.seconds * 1000}
    run.expect(not slow, f"every hot query within {HOT_QUERY_TIME} on the {ROWS}-job table",
               "; ".join(f"{n}: {c}" for n, c in slow.items()))
    # and the API itself answers the tenant's list quickly on the big table
    listed = run.platform.list_jobs(run.account, limit=20)
    run.expect(listed.ok and listed.elapsed < LIST_ON_BIG_TABLE.seconds,
               f"the tenant's render list on {ROWS} jobs within {LIST_ON_BIG_TABLE}", str(listed))
    run.heal(fill, "remove the filler rows")
    run.steady_state_after()


# =======================================================================================
def _rate_limited(run: ScenarioRun, client: httpx.Client, ep: Endpoint, n: int = 25) -> list[Answer[Any]]:
    """``n`` quick requests from one key: with limits working some are refused as rate limited."""
    return [send(run, client, ep) for _ in range(n)]


def _limited(answers: list[Answer[Any]]) -> bool:
    return any(a.kind is ErrorKind.RATE_LIMITED for a in answers)


@runs(D.REDIS_DOWN)
def test_redis_down_api_stays_up_fail_open(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    run.steady_state_before()
    started = api_started(run)
    (tenant,) = clients(run, [run.open_account("redis.down tenant", credits=1000)], timeout=CLIENT)
    read = run.platform.light_read()  # type: ignore[attr-defined]
    try:
        base = _rate_limited(run, tenant, read)
        run.expect(_limited(base), "per-key limit in force before the fault (some rate_limited)",
                   ", ".join(sorted({str(a.status) for a in base})))
        for spec in D.REDIS_DOWN.faults:
            label = spec.describe()
            fault = run.inject(spec)
            h = run.detect(lambda: (h := run.platform.health()).status == 503 and "cache" in h.failing and h,
                           f"health 503 naming the cache ({label})")
            run.journal.notes.append(f"health with '{label}': failing={list(h.failing)}")
            # documented policy: RATE_LIMIT_FAIL_MODE=open -> served, no per-key refusal, no 503
            answers = _rate_limited(run, tenant, read)
            bad = [a for a in answers if not a.ok or a.elapsed > FAIL_OPEN_ANSWER.seconds]
            run.expect(not bad, f"'{label}': every request served (success within {FAIL_OPEN_ANSWER}; "
                       "RATE_LIMIT_FAIL_MODE=open)", f"{len(bad)}/{len(answers)}: " + "; ".join(map(str, bad[:4])))
            run.accepted(run.submit(title=f"while '{label}'", duration=1.0), f"a render during '{label}'")
            run.heal(fault, f"bring the cache back ({label})")
            run.recovered(lambda: run.platform.health().ok, "health OK again", poll=POLL)
            # recovery without an API restart: limits apply again once the 1 s circuit closes
            run.recovered(lambda: _limited(_rate_limited(run, tenant, read)),
                          "per-key limit in force again (rate_limited on a burst)", poll=POLL)
            wait_for(lambda: send(run, tenant, read).ok, what="the tenant's bucket to refill",
                     timeout=run.wait(BUCKET_REFILL), poll=Poll(0.5))
        run.expect(api_started(run) == started, "the API container was not restarted",
                   f"StartedAt {started} -> {api_started(run)}")
    finally:
        tenant.close()
    run.steady_state_after()


# =======================================================================================
@runs(D.REDIS_MAXMEMORY)
def test_redis_maxmemory_evicts_and_keeps_working(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    r = cache_client(run)
    run.steady_state_before()
    policy = r.config_get("maxmemory-policy").get("maxmemory-policy")
    run.journal.notes.append(f"maxmemory-policy: {policy}")
    run.expect(policy not in (None, "noeviction"),
               "an eviction policy set on Redis (R §四.3: maxmemory-policy allkeys-lru)", f"maxmemory-policy={policy}")
    (tenant,) = clients(run, [run.open_account("redis.maxmemory tenant", credits=1000)], timeout=CLIENT)
    read = run.platform.light_read()  # type: ignore[attr-defined]
    fill = RedisAtMaxmemory(r)
    # every key the platform writes from here on, and its TTL right after each write (R §八 1.)
    watch = dbprobe.KeyWriteWatch(r, exclude=(fill.prefix,), grace=TTL_GRACE.seconds)
    watch.start()
    try:
        run.inject(fill)
        run.detect(fill.full, "Redis used_memory at maxmemory")
        info = r.info("memory")
        run.journal.notes.append(f"used {info['used_memory']} of maxmemory {info['maxmemory']}, "
                                 f"{fill.filled_keys} filler keys written, evicted {r.info('stats')['evicted_keys']}")
        answers = _rate_limited(run, tenant, read)
        statuses = sorted({a.status or 0 for a in answers})
        run.expect(all(a.ok or a.kind is ErrorKind.RATE_LIMITED for a in answers),
                   "requests served at maxmemory (success or rate_limited)", f"statuses {statuses}")
        run.expect(_limited(answers),
                   "per-key limit still enforced at maxmemory (Redis evicts instead of refusing writes)",
                   f"no rate_limited in {len(answers)} quick requests: statuses {statuses}")
        job_id = run.accepted(run.submit(title="at redis maxmemory", duration=1.0), "a render at Redis maxmemory")
        job = run.ledger.wait_terminal(job_id, run.timeouts.job_completion, "the render at maxmemory")
        run.expect(job.state is JobState.COMPLETED, "the render completes at Redis maxmemory", brief(job))
    finally:
        writes = watch.stop()
    run.journal.notes.append(f"key writes while the scenario ran: {writes.summary()}")
    run.expect(bool(writes.checked), "the platform's key writes observed during the scenario's traffic",
               writes.summary())
    run.expect(not writes.without_ttl, "every key the platform writes carries a TTL right after the write (R §八 1.)",
               f"{len(writes.without_ttl)} of {len(writes.keys)} keys written without a TTL: "
               + "; ".join(f"{k}: {why}" for k, why in list(writes.without_ttl.items())[:5]))
    # and what survives the fill (older keys included)
    seen, persistent = dbprobe.keys_without_ttl(r, exclude=fill.prefix)
    run.journal.notes.append(f"keys in Redis: {seen}, without TTL: {len(persistent)}")
    run.expect(not persistent, "no key without a TTL in Redis (R §八 1.)",
               f"{len(persistent)} of {seen} keys without TTL, e.g. {persistent[:3]}")
    run.heal(fill, "restore maxmemory, remove the filler")
    try:
        run.recovered(lambda: send(run, tenant, read).ok, "requests served after the heal", poll=POLL)
    finally:
        tenant.close()
    run.steady_state_after()


# =======================================================================================
@runs(D.DATA_RESTORE)
def test_data_restore_drill(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    stop_api, stop_workers, _drill = D.DATA_RESTORE.faults
    snapshot = getattr(run.platform, "db_snapshot", None)
    if snapshot is None:
        raise MissingCapability(f"platform {run.platform.name} cannot list its jobs and balances (db_snapshot)")
    assert run.target.database_dsn, "the scenario needs the database capability"
    pg = PgAccess(run.target.container("database"), run.target.database_dsn)
    run.steady_state_before()
    backed_up = [completed_job(run, f"backed up {i}") for i in range(3)]
    # the backup (R §六.2: pg_dump every 6 h) and what it holds
    dump = pg_dump(pg)
    with pg.connect() as conn:
        jobs_at_dump, balances_at_dump = snapshot(conn)
    # after the backup: one more job, outside the ledger (it is lost by design when we restore)
    late = run.platform.submit(run.account, RenderRequest(title="after the backup", duration=1.0))
    run.expect(late.ok and bool(late.value), "a render accepted after the backup", str(late))
    late_id = str(late.value)
    wait_for(lambda: (j := run.job(late_id)) is not None and j.state in (JobState.COMPLETED, JobState.FAILED),
             what="the post-backup job to finish", timeout=run.timeouts.job_completion, poll=POLL)
    # R §六.2 step 1: stop writes
    writers = [run.inject(stop_api), run.inject(stop_workers)]
    dropped = run.inject(DatabaseDropped(pg, dump))
    run.detect(lambda: not dropped.exists(), "the database is gone")
    t0 = time.monotonic()
    run.remedy(dropped.restore, "pg_restore the latest dump")
    run.journal.notes.append(f"pg_restore took {time.monotonic() - t0:.1f}s")
    for f in writers:
        run.heal(f, f"start again: {f.describe()}")
    with pg.connect() as conn:
        jobs_now, balances_now = snapshot(conn)
    missing = sorted(set(jobs_at_dump) - set(jobs_now))
    changed = {j: (jobs_at_dump[j], jobs_now[j]) for j in jobs_at_dump if j in jobs_now and jobs_now[j] != jobs_at_dump[j]}
    bal_diff = {u: (b, balances_now.get(u)) for u, b in balances_at_dump.items() if balances_now.get(u) != b}
    lost_since = sorted({late_id} - set(jobs_now))
    run.journal.notes.append(f"drill: {len(jobs_at_dump)} jobs and {len(balances_at_dump)} balances in the backup; "
                             f"restored {len(jobs_now)} jobs; lost since the backup: {lost_since or 'nothing'}")
    run.expect(not missing and not changed, "every job in the backup restored with its status",
               f"missing {missing[:5]}, changed {list(changed.items())[:5]}")
    run.expect(not bal_diff, "every balance in the backup restored", f"differs: {list(bal_diff.items())[:5]}")
    run.expect(lost_since == [late_id], "the drill reports the job created after the backup as lost",
               f"lost since the backup: {lost_since}")
    run.recovered(lambda: run.platform.job(run.account, backed_up[0]).ok, "the API serves the restored jobs",
                  poll=POLL)
    run.steady_state_after()
