"""Dependency scenarios: Postgres and Redis (R §四, A §4, A §5) and the backup drill (R §六.2)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

import httpx
import pytest

from renderchaos.errors import WaitTimeout
from renderchaos.faults.container import Stopped
from renderchaos.faults.db import DatabaseDropped, HeldConnections, RedisAtMaxmemory, pg_dump
from renderchaos.faults.network import RouteDown, RouteToxic
from renderchaos.probes import db as dbprobe
from renderchaos.probes.api import render_body
from renderchaos.scenario import ScenarioRun, runs
from renderchaos.wait import Deadline, Poll, wait_for
from scenarios import deps as D

#: a request to the API while a dependency is down must be answered within this (R §四: fail fast)
FAST_FAIL_S = 5.0
#: DB_POOL_TIMEOUT (3 s, refstack default) plus the request's own work
POOL_FAIL_S = 3.0 + 3.0
#: upper bound on one request while the database link is degraded (db.partition)
PARTITION_BOUND_S = 20.0
#: a client that never gets an answer is cut here; anything near it counts as hung
CLIENT_CUTOFF_S = 40.0


@dataclass(frozen=True)
class Timed:
    status: int | None  # None: no answer (client timeout / connection error)
    code: str | None
    elapsed: float
    error: str = ""

    def __str__(self) -> str:
        what = f"{self.status} {self.code or ''}".strip() if self.status is not None else f"no answer ({self.error})"
        return f"{what} in {self.elapsed:.2f}s"


def timed(fn: Callable[[], httpx.Response]) -> Timed:
    t0 = time.monotonic()
    try:
        resp = fn()
    except httpx.HTTPError as exc:
        return Timed(None, None, time.monotonic() - t0, f"{type(exc).__name__}: {exc}")
    code = None
    try:
        code = (resp.json().get("error") or {}).get("code")
    except Exception:  # noqa: BLE001 - not JSON: no code
        pass
    return Timed(resp.status_code, code, time.monotonic() - t0)


def http(run: ScenarioRun, api_key: str | None, timeout: float = CLIENT_CUTOFF_S) -> httpx.Client:
    c = httpx.Client(base_url=run.target.api_url, timeout=timeout, headers={"User-Agent": "renderchaos"})
    if api_key:
        c.headers["Authorization"] = f"Bearer {api_key}"
    return c


def completed_job(run: ScenarioRun, title: str) -> str:
    resp = run.submit(title=title, duration=1.0)
    run.expect(resp.status_code == 202, "a render accepted in the steady state (202)", f"{resp.status_code} {resp.text[:200]}")
    job_id = resp.json()["id"]
    job = run.ledger.wait_terminal(job_id, run.timeouts.job_completion, f"{title} to finish")
    run.expect(job["status"] == "completed", f"{title} completed", f"{job['status']} {job.get('error_code')}")
    return job_id


def burst(clients: list[httpx.Client], path: str, per_client: int) -> list[Timed]:
    """``per_client`` concurrent GETs per client; the answers in any order."""
    calls = [c for c in clients for _ in range(per_client)]
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(lambda c: timed(lambda: c.get(path)), calls))


# =======================================================================================
@runs(D.DB_DOWN)
def test_db_down_fast_503_then_recovers_without_api_restart(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    stack = run.target.stack
    assert stack is not None
    run.steady_state_before()
    api_started = stack.api.state().get("StartedAt")
    job_id = completed_job(run, "before the database goes down")
    # Several tenants (per-key limits), all prepared now: nothing may touch the API's pools during
    # the outage except the one request we time, so a stale pool shows up after the restart.
    users = [run.admin.create_user(credits=100, name=f"db.down reader {i}") for i in range(4)]
    owner = http(run, run.user.api_key, timeout=30.0)
    readers = [http(run, u.api_key, timeout=30.0) for u in users]
    anon = http(run, None, timeout=30.0)
    try:
        # warm every API process's pool (gunicorn workers share the listening socket)
        burst(readers, "/v1/videos?limit=1", 3)
        down = run.inject(Stopped(stack.postgres, grace=5))
        first = timed(lambda: owner.get(f"/v1/videos/{job_id}"))
        run.expect(first.status == 503 and first.code == "database_unavailable" and first.elapsed <= FAST_FAIL_S,
                   f"503 database_unavailable within {FAST_FAIL_S:.0f}s while Postgres is down", str(first))

        def health_names_database() -> Any:
            r = anon.get("/health")
            return r.status_code == 503 and "database" in r.json().get("failing", []) and r.json()
        try:
            run.detect(health_names_database, "/health 503 with `database` in failing")
        finally:
            h = timed(lambda: anon.get("/health"))
            run.journal.notes.append(f"/health while Postgres is down: {h}")
        run.heal(down, "start Postgres (and wait until it accepts connections)")
        # the API was not restarted: the very first requests after Postgres is back must succeed
        answers = burst([owner, *readers], "/v1/videos?limit=1", 3)
        bad = [a for a in answers if a.status != 200]
        run.expect(not bad, "every request after Postgres is back answers 200 (pool pre-ping, no API restart)",
                   f"{len(bad)}/{len(answers)} failed: " + "; ".join(map(str, bad[:5])))
        run.recovered(lambda: owner.get(f"/v1/videos/{job_id}").status_code == 200, "the job readable again")
        run.expect(stack.api.state().get("StartedAt") == api_started, "the API container was not restarted",
                   f"StartedAt {api_started} -> {stack.api.state().get('StartedAt')}")
    finally:
        for c in (owner, anon, *readers):
            c.close()
    run.steady_state_after()


# =======================================================================================
@runs(D.DB_PARTITION)
def test_db_partition_bounded_latency_and_recovery(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    stack = run.target.stack
    assert stack is not None
    run.steady_state_before()
    route = run.target.routes["postgres"]
    proxy = run.target.toxiproxy_url
    job_id = completed_job(run, "before the partition")
    users = [run.admin.create_user(credits=100, name=f"db.partition reader {i}") for i in range(4)]
    readers = [http(run, u.api_key) for u in users]
    faults = [
        ("latency 1 s", RouteToxic(proxy, route, "latency", attributes={"latency": 1000, "jitter": 0})),
        ("connections dropped after 2 s", RouteToxic(proxy, route, "timeout", attributes={"timeout": 2000})),
        ("reset_peer", RouteToxic(proxy, route, "reset_peer", attributes={"timeout": 0})),
        ("route down", RouteDown(proxy, route)),
    ]
    try:
        burst(readers, "/v1/videos?limit=1", 2)  # warm the pools of every API process
        for label, fault in faults:
            run.inject(fault)
            answers = burst(readers, f"/v1/videos?limit=1", 2)
            slow = [a for a in answers if a.status is None or a.elapsed > PARTITION_BOUND_S]
            five = [a for a in answers if a.status is not None and a.status >= 500 and a.status != 503]
            run.journal.notes.append(f"{label}: " + ", ".join(sorted(str(a) for a in answers)))
            run.expect(not slow, f"every request answered within {PARTITION_BOUND_S:.0f}s during '{label}'",
                       "; ".join(map(str, slow[:4])))
            run.expect(not five, f"200 or a clean 503 during '{label}', never 500",
                       "; ".join(map(str, five[:4])))
            # no hung backend: nothing of the stack runs longer than the statement timeout
            with stack.postgres.connect() as conn:
                hung = dbprobe.long_active(conn, stack.postgres.database, 10.0)
            run.expect(not [h for h in hung if h[1].startswith("refstack")],
                       "no statement of the stack active > 10 s", str(hung))
            run.heal(fault, f"heal: {label}")
            # recovery right after the heal: the first requests succeed (pre-ping drops dead connections)
            after = burst(readers, "/v1/videos?limit=1", 2)
            bad = [a for a in after if a.status != 200]
            run.expect(not bad, f"every request right after healing '{label}' answers 200",
                       f"{len(bad)}/{len(after)}: " + "; ".join(map(str, bad[:4])))
        run.detect(lambda: True, "bounded answers under every toxic")  # recorded above, step by step
        run.recovered(lambda: run.api.get(job_id).status_code == 200, "the job readable after the heal")
    finally:
        for c in readers:
            c.close()
    run.steady_state_after()


# =======================================================================================
@runs(D.DB_POOL_EXHAUSTED)
@pytest.mark.stack(env={"WEB_CONCURRENCY": "1"})
def test_db_pool_exhausted_fails_fast_no_leak(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    stack = run.target.stack
    assert stack is not None
    run.steady_state_before()
    job_id = completed_job(run, "before the pool is exhausted")
    owner = http(run, run.user.api_key)
    db = stack.postgres.database
    try:
        hold = run.inject(HeldConnections(run.target.api_url, run.target.admin_token, seconds=12))
        # wait until the hold has every connection (its thread starts after the 202)
        with stack.postgres.connect() as conn:
            wait_for(lambda: dbprobe.sessions_by_state(conn, db, "refstack-api").get("idle", 0) >= 15,
                     what="15 idle pooled API connections held", timeout=10.0, poll=Poll(0.1))
        first = run.detect(lambda: (t := timed(lambda: owner.get(f"/v1/videos/{job_id}"))).status != 200 and t,
                           "a request refused while the pool is held", timeout=10.0)
        run.journal.notes.append(f"request during the hold: {first}")
        run.expect(first.status == 503 and first.code == "database_unavailable" and first.elapsed <= POOL_FAIL_S,
                   f"503 database_unavailable within DB_POOL_TIMEOUT + 3 s ({POOL_FAIL_S:.0f}s)", str(first))
        with stack.postgres.connect() as conn:
            leak = dbprobe.idle_in_transaction(conn, db)
            states = dbprobe.sessions_by_state(conn, db)
        run.journal.notes.append(f"pg_stat_activity during the hold: {states}")
        run.expect(not leak, "no session idle in transaction while the pool is held", str(leak))
        run.heal(hold, "the held connections are released")
        run.recovered(lambda: owner.get(f"/v1/videos/{job_id}").status_code == 200, "requests served again")
        with stack.postgres.connect() as conn:
            leak = dbprobe.idle_in_transaction(conn, db)
        run.expect(not leak, "no session idle in transaction after the release (A §4.1 step 4)", str(leak))
    finally:
        owner.close()
    run.steady_state_after()


# =======================================================================================
@runs(D.DB_DEADLOCK)
def test_db_deadlock_cancel_is_retried(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    stack = run.target.stack
    assert stack is not None
    run.steady_state_before()
    db = stack.postgres.database
    owner = http(run, run.user.api_key)
    try:
        for attempt in range(3):  # the harness's side must not be the victim; retry the setup if it was
            resp = run.submit(title=f"deadlock victim {attempt}", duration=30.0)
            run.expect(resp.status_code == 202, "render accepted (202)", f"{resp.status_code} {resp.text[:200]}")
            job_id = resp.json()["id"]
            outcome = _provoke_deadlock(run, owner, job_id, db)
            if outcome is not None:
                break
        else:
            run.fail("the API's cancel chosen as the deadlock victim", "the harness's transaction lost 3 times")
        answer, harness_note = outcome
        run.journal.notes.append(f"cancel under deadlock: {answer}; harness side: {harness_note}")
        run.expect(answer.status in (200, 409, 503), "the cancel answers 200 (retried) or a clean 409/503, never 500",
                   str(answer))
        run.expect(answer.status == 200, "the deadlocked cancel retried transparently: 200 cancelled", str(answer))
        run.recovered(lambda: (run.ledger.status(job_id) or {}).get("status") == "cancelled", "the job is cancelled")
    finally:
        owner.close()
    run.steady_state_after()


def _provoke_deadlock(run: ScenarioRun, owner: httpx.Client, job_id: str, db: str) -> tuple[Timed, str] | None:
    """README 'Deadlocks': lock credits(U) here, DELETE /v1/videos/J (locks J, waits for credits), then
    update J here. Returns the cancel's answer, or None if Postgres chose the harness as the victim."""
    import psycopg

    stack = run.target.stack
    user_id = run.user.user_id
    result: dict[str, Timed] = {}
    with stack.postgres.connect() as conn:
        # the API's backends check for deadlocks after deadlock_timeout (1 s); ours much later, so the
        # cycle is found on the API's side and its retry is what we test
        conn.execute("SET deadlock_timeout = '20s'")
        conn.execute("BEGIN")
        conn.execute("UPDATE credits SET balance = balance WHERE user_id = %s", (user_id,))
        t = threading.Thread(target=lambda: result.setdefault("cancel", timed(lambda: owner.delete(f"/v1/videos/{job_id}"))),
                             name="deadlock-cancel", daemon=True)
        t.start()
        try:
            waiters = run.detect(lambda: dbprobe.lock_waiters(conn, db, "refstack-api"),
                                 "the cancel waiting for the credits row lock", timeout=10.0, poll=Poll(0.02))
            run.journal.notes.append(f"API waiting: {waiters}")
            conn.execute("UPDATE jobs SET updated_at = now() WHERE id = %s", (job_id,))
            conn.execute("COMMIT")
            note = "committed"
        except psycopg.errors.DeadlockDetected:
            conn.execute("ROLLBACK")
            note = "victim"
        finally:
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.execute("ROLLBACK")
    wait_for(lambda: not t.is_alive(), what="the cancel request to answer", timeout=CLIENT_CUTOFF_S + 5, poll=Poll(0.05))
    if note == "victim":
        if result["cancel"].status == 200:
            return None
    return result["cancel"], note


# =======================================================================================
ROWS = 200_000
FILLER_USERS = 2_000


@runs(D.DB_SLOW_QUERY)
def test_db_slow_query_hot_queries_use_indexes(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    stack = run.target.stack
    assert stack is not None
    run.steady_state_before()
    tag = f"renderchaos slow_query {run.journal.t0:.0f}"
    conn = stack.postgres.connect()
    try:
        t0 = time.monotonic()
        # users, then jobs: created over 90 days, status mix of a real fleet (pending rare)
        conn.execute("INSERT INTO users (id, name) SELECT gen_random_uuid(), %s FROM generate_series(1, %s)",
                     (tag, FILLER_USERS))
        conn.execute("""
            WITH u AS (SELECT id, row_number() OVER () - 1 AS n FROM users WHERE name = %(tag)s)
            INSERT INTO jobs (id, user_id, kind, status, progress, cost, params, created_at, updated_at, finished_at)
            SELECT gen_random_uuid(), u.id, CASE WHEN g %% 10 = 0 THEN 'ai' ELSE 'render' END,
                   s.status, CASE WHEN s.status = 'completed' THEN 100 ELSE 0 END, 10, '{}'::jsonb,
                   c.at, c.at, CASE WHEN s.status IN ('pending', 'running') THEN NULL ELSE c.at + interval '1 minute' END
            FROM generate_series(1, %(rows)s) AS g
            JOIN u ON u.n = g %% %(users)s
            CROSS JOIN LATERAL (SELECT CASE
                WHEN g %% 1000 = 0 THEN 'pending' WHEN g %% 1000 = 1 THEN 'running'
                WHEN g %% 100 < 6 THEN 'failed' WHEN g %% 100 < 8 THEN 'cancelled' WHEN g %% 100 = 8 THEN 'timeout'
                ELSE 'completed' END AS status) s
            CROSS JOIN LATERAL (SELECT now() - (g * interval '39 seconds') AS at) c
            """, {"tag": tag, "rows": ROWS, "users": FILLER_USERS})
        conn.execute("ANALYZE jobs")
        run.journal.notes.append(f"{ROWS} jobs inserted and analyzed in {time.monotonic() - t0:.1f}s")
        some_user = conn.execute("SELECT id FROM users WHERE name = %s LIMIT 1", (tag,)).fetchone()[0]

        def plans() -> dict[str, dbprobe.Plan]:
            return {name: dbprobe.explain(conn, sql, {"user_id": some_user})
                    for name, sql in dbprobe.HOT_QUERIES.items()}
        found = run.detect(plans, "EXPLAIN of every hot query")
        for name, plan in found.items():
            run.journal.notes.append(f"{name}: {plan.text}")
        scans = {name: plan.text for name, plan in found.items() if plan.seq_scans}
        run.expect(not scans, "no Seq Scan on jobs in the hot queries (R §三.3: index on user_id / status / created_at)",
                   "; ".join(f"{n}: {p}" for n, p in scans.items()))
        # and the API itself answers the list quickly on the big table
        reader = conn.execute("SELECT 1").fetchone()  # noqa: F841 - connection still fine
        t = timed(lambda: run.api.http.get("/v1/videos?limit=20"))
        run.expect(t.status == 200 and t.elapsed < 2.0, "GET /v1/videos on 200k jobs within 2 s", str(t))
        run.remedy(lambda: conn.execute("DELETE FROM users WHERE name = %s", (tag,)),
                   "remove the filler rows (jobs cascade)")
        run.recovered(lambda: conn.execute("SELECT count(*) FROM users WHERE name = %s", (tag,)).fetchone()[0] == 0,
                      "filler rows gone")
    finally:
        try:
            conn.execute("DELETE FROM users WHERE name = %s", (tag,))
        finally:
            conn.close()
    run.steady_state_after()


# =======================================================================================
def _rate_limited(client: httpx.Client, path: str, n: int = 25) -> list[Timed]:
    """``n`` quick requests from one key: with limits working some get 429."""
    return [timed(lambda: client.get(path)) for _ in range(n)]


@runs(D.REDIS_DOWN)
def test_redis_down_api_stays_up_fail_open(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    stack = run.target.stack
    assert stack is not None
    run.steady_state_before()
    api_started = stack.api.state().get("StartedAt")
    user = run.admin.create_user(credits=1000, name="redis.down tenant")
    tenant = http(run, user.api_key, timeout=15.0)
    anon = http(run, None, timeout=15.0)
    path = "/v1/videos?limit=1"
    try:
        base = _rate_limited(tenant, path)
        run.expect(any(t.status == 429 for t in base), "per-key limit in force before the fault (some 429)",
                   ", ".join(sorted({str(t.status) for t in base})))
        for label, fault in (("stopped", Stopped(stack.redis, grace=2)),
                             ("partitioned", RouteDown(run.target.toxiproxy_url, run.target.routes["redis"]))):
            run.inject(fault)
            h = run.detect(lambda: (r := anon.get("/health")).status_code == 503
                           and "redis" in r.json().get("failing", []) and r.json(),
                           f"/health 503 naming `redis` (Redis {label})")
            run.journal.notes.append(f"/health with Redis {label}: failing={h['failing']}")
            # documented policy: RATE_LIMIT_FAIL_MODE=open -> served, no per-key 429, no 503
            answers = _rate_limited(tenant, path)
            bad = [a for a in answers if a.status != 200 or a.elapsed > 3.0]
            run.expect(not bad, f"Redis {label}: every request served (200, < 3 s; RATE_LIMIT_FAIL_MODE=open)",
                       f"{len(bad)}/{len(answers)}: " + "; ".join(map(str, bad[:4])))
            resp = run.submit(title=f"while redis is {label}", duration=1.0)
            run.expect(resp.status_code == 202, f"a render accepted while Redis is {label}",
                       f"{resp.status_code} {resp.text[:200]}")
            run.heal(fault, f"bring Redis back ({label})")
            run.recovered(lambda: anon.get("/health").status_code == 200, "/health 200 again")
            # recovery without an API restart: limits apply again once the 1 s circuit closes
            run.recovered(lambda: any(t.status == 429 for t in _rate_limited(tenant, path)),
                          "per-key limit in force again (429 on a burst)")
            wait_for(lambda: tenant.get(path).status_code == 200, what="the tenant's bucket to refill",
                     timeout=10.0, poll=Poll(0.5))
        run.expect(stack.api.state().get("StartedAt") == api_started, "the API container was not restarted",
                   f"StartedAt {api_started} -> {stack.api.state().get('StartedAt')}")
    finally:
        tenant.close()
        anon.close()
    run.steady_state_after()


# =======================================================================================
@runs(D.REDIS_MAXMEMORY)
def test_redis_maxmemory_evicts_and_keeps_working(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    stack = run.target.stack
    assert stack is not None
    run.steady_state_before()
    r = stack.redis.client()
    policy = r.config_get("maxmemory-policy").get("maxmemory-policy")
    run.journal.notes.append(f"maxmemory-policy: {policy}")
    run.expect(policy not in (None, "noeviction"),
               "an eviction policy set on Redis (R §四.3: maxmemory-policy allkeys-lru)", f"maxmemory-policy={policy}")
    user = run.admin.create_user(credits=1000, name="redis.maxmemory tenant")
    tenant = http(run, user.api_key, timeout=15.0)
    path = "/v1/videos?limit=1"
    try:
        fill = run.inject(RedisAtMaxmemory(stack.redis))
        run.detect(fill.full, "Redis used_memory at maxmemory")
        info = r.info("memory")
        run.journal.notes.append(f"used {info['used_memory']} of maxmemory {info['maxmemory']}, "
                                 f"{fill.filled_keys} filler keys written, evicted {r.info('stats')['evicted_keys']}")
        answers = _rate_limited(tenant, path)
        statuses = sorted({a.status or 0 for a in answers})
        run.expect(all(a.status in (200, 429) for a in answers), "requests served at maxmemory (200 / 429)",
                   f"statuses {statuses}")
        run.expect(any(a.status == 429 for a in answers),
                   "per-key limit still enforced at maxmemory (Redis evicts instead of refusing writes)",
                   f"no 429 in {len(answers)} quick requests: statuses {statuses}")
        resp = run.submit(title="at redis maxmemory", duration=1.0)
        run.expect(resp.status_code == 202, "a render accepted at Redis maxmemory", f"{resp.status_code} {resp.text[:200]}")
        job = run.ledger.wait_terminal(resp.json()["id"], run.timeouts.job_completion, "the render at maxmemory")
        run.expect(job["status"] == "completed", "the render completes at Redis maxmemory", str(job.get("status")))
        seen, persistent = dbprobe.keys_without_ttl(r, "refstack:*")
        run.journal.notes.append(f"refstack keys: {seen}, without TTL: {len(persistent)}")
        run.expect(seen > 0 and not persistent, "every key the stack writes carries a TTL (R §八 1.)",
                   f"{len(persistent)} of {seen} keys without TTL, e.g. {persistent[:3]}")
        run.heal(fill, "restore maxmemory, remove the filler")
        run.recovered(lambda: tenant.get(path).status_code == 200, "requests served after the heal")
    finally:
        tenant.close()
    run.steady_state_after()


# =======================================================================================
@runs(D.DATA_RESTORE)
def test_data_restore_drill(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    stack = run.target.stack
    assert stack is not None
    pg = stack.postgres
    run.steady_state_before()
    for i in range(3):
        completed_job(run, f"backed up {i}")
    # the backup (R §六.2: pg_dump every 6 h) and what it holds
    dump = pg_dump(pg)
    with pg.connect() as conn:
        jobs_at_dump = dict(conn.execute("SELECT id::text, status FROM jobs").fetchall())
        balances_at_dump = dict(conn.execute("SELECT user_id::text, balance FROM credits").fetchall())
    # after the backup: one more job, outside the ledger (it is lost by design when we restore)
    after = run.client(run.user.api_key)
    resp = after.submit(render_body(title="after the backup", duration=1.0))
    run.expect(resp.status_code == 202, "a render accepted after the backup", f"{resp.status_code}")
    late_id = resp.json()["id"]
    wait_for(lambda: (run.admin.job(late_id) or {}).get("status") in ("completed", "failed"),
             what="the post-backup job to finish", timeout=run.timeouts.job_completion, poll=Poll(0.5))
    # R §六.2 step 1: stop writes
    writers = [run.inject(Stopped(svc, grace=5)) for svc in (stack.api, *stack.workers)]
    dropped = run.inject(DatabaseDropped(pg, dump))
    with pg.connect(dbname="postgres") as conn:
        run.detect(lambda: conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (pg.database,)).fetchone()
                   is None, "the database is gone")
    t0 = time.monotonic()
    run.remedy(dropped.restore, "pg_restore the latest dump")
    run.journal.notes.append(f"pg_restore took {time.monotonic() - t0:.1f}s")
    for f in writers:
        run.heal(f, f"start {f.service.name}")
    with pg.connect() as conn:
        jobs_now = dict(conn.execute("SELECT id::text, status FROM jobs").fetchall())
        balances_now = dict(conn.execute("SELECT user_id::text, balance FROM credits").fetchall())
    missing = sorted(set(jobs_at_dump) - set(jobs_now))
    changed = {j: (jobs_at_dump[j], jobs_now[j]) for j in jobs_at_dump if j in jobs_now and jobs_now[j] != jobs_at_dump[j]}
    bal_diff = {u: (b, balances_now.get(u)) for u, b in balances_at_dump.items() if balances_now.get(u) != b}
    lost_since = sorted(set([late_id]) - set(jobs_now))
    run.journal.notes.append(f"drill: {len(jobs_at_dump)} jobs and {len(balances_at_dump)} balances in the backup; "
                             f"restored {len(jobs_now)} jobs; lost since the backup: {lost_since or 'nothing'}")
    run.expect(not missing and not changed, "every job in the backup restored with its status",
               f"missing {missing[:5]}, changed {list(changed.items())[:5]}")
    run.expect(not bal_diff, "every balance in the backup restored", f"differs: {list(bal_diff.items())[:5]}")
    run.expect(lost_since == [late_id], "the drill reports the job created after the backup as lost",
               f"lost since the backup: {lost_since}")
    run.recovered(lambda: run.api.get(next(iter(run.ledger.jobs))).status_code == 200,
                  "the API serves the restored jobs")
    run.steady_state_after()
