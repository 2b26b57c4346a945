"""API scenarios (R §二, R §六.3, A §1): credentials, limits, validation, existence leaks, credits,
fuzzing, SQL injection and floods. Gate tier: no container is touched, the fault is the input.

Every request goes through the platform adapter (``run.platform``): its clients, its credential
mistakes, its invalid requests, its resources and seed requests. A refusal is judged in
normalised terms (status and :class:`ErrorKind`) and, where the adapter opts into the runbooks'
envelopes (feature ``runbook_envelopes``), also by the documented envelope.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Callable, Iterator

import httpx
import pytest

from renderchaos.faults.api import (
    SQL_PAYLOADS, BalanceSet, Flood, KeyRevoked, TokenExpired,
    honour_retry_after, latencies, looks_like_stack_trace, p95, send, source_client,
)
from renderchaos.platforms.base import Account, Answer, ErrorKind, Feature, JobState
from renderchaos.scenario import ScenarioRun, runs
from renderchaos.wait import Deadline, Limit, Poll, Wait
from scenarios import api as A

#: a burst of this many back-to-back requests must meet the per-key limit (far above any sane burst)
BURST_BOUND = 60
#: fuzzed requests generated per run: bounded and fast in the gate, deeper in the resilience profile
#: one SQL injection request may take this long; an injected pg_sleep(5) would not
INJECTION_ANSWER = Limit(4.0, "an injected pg_sleep(5) / SLEEP(5) must not run")
#: how long one injection request may take before we call it no answer
INJECTION_REQUEST = Wait(10.0, "one injection request")
#: the per-IP limit of R §六.3: limit_req zone=api rate=10r/s burst=20
IP_RATE, IP_BURST = 10.0, 20
#: latency resolution on a shared 2-core host: 2x a 5 ms p95 is noise
LATENCY_FLOOR = Limit(0.05, "measurement floor on a shared 2-core host")
FLOOD_FROM = "127.0.0.2"
OBSERVER_FROM = "127.0.0.3"


# ---------------------------------------------------------------------------------------
# helpers


@pytest.fixture
def http(scenario_run: ScenarioRun) -> Iterator[Callable[..., httpx.Client]]:
    """``http(account)``: the platform's HTTP client as ``account`` (``None``: no credentials),
    closed at the end of the test."""
    with contextlib.ExitStack() as stack:
        yield lambda account=None, **kw: stack.enter_context(scenario_run.platform.http(account, **kw))


def refusal_problem(run: ScenarioRun, resp: httpx.Response, status: int, kind: ErrorKind) -> str | None:
    """None if ``resp`` is ``status`` refused as ``kind`` (normalised) and, where the platform opts
    into the runbooks' envelopes, in the documented envelope of its API."""
    err = run.platform.classify(resp)
    if resp.status_code != status or err is None or err.kind is not kind:
        got = f"{err.kind}" if err is not None else "success"
        return f"{resp.status_code} ({got}), expected {status} {kind}: {resp.text[:200]}"
    if run.platform.has(Feature.ENVELOPES):
        return run.platform.envelope_problem(resp, status, kind)  # type: ignore[attr-defined]
    return None


def message_of(run: ScenarioRun, resp: httpx.Response) -> str:
    err = run.platform.classify(resp)
    return err.message if err is not None else ""


def ai_submit(run: ScenarioRun, account: Account, prompt: str) -> Answer[str]:
    """An AI job as ``account``; an accepted one goes into the run's ledger (audited after)."""
    answer: Answer[str] = run.platform.ai_submit(account, prompt)  # type: ignore[attr-defined]
    run.ledger.accept(answer, account, kind="ai")
    return answer


# ---------------------------------------------------------------------------------------
@runs(A.AUTH)
def test_auth_401_names_the_mistake(scenario_run: ScenarioRun, http: Callable[..., httpx.Client]) -> None:
    run = scenario_run
    platform: Any = run.platform
    mistakes, revoke, expire = A.AUTH.faults
    run.steady_state_before()
    user = run.open_account("api.auth", credits=100)
    anon = http(None)  # no default Authorization header
    run.inject(mistakes)
    revoked = run.inject(KeyRevoked(platform, user))
    expired = run.inject(TokenExpired(platform, user))
    assert revoked.revoked is not None and revoked.revoked.api_key and expired.token
    run.journal.notes.append(f"{revoke.describe()}; {expire.describe()}")

    # auth comes first: the probes include a resource that does not exist (a 401, not a 404)
    probes = platform.auth_probes()
    cases: list[tuple[str, bool, str, dict[str, str], Any]] = []
    for bc in platform.bad_credentials(user):
        for _what, ai, path in probes:
            cases.append((bc.name, ai, path, dict(bc.headers), bc.names_it))
    for _what, ai, path in probes:
        cases.append(("deleted_key", ai, path, platform.auth_headers(revoked.revoked.api_key), revoked.names_it))
        cases.append(("expired_token", ai, path, platform.auth_headers(expired.token), expired.names_it))
    names = sorted({c[0] for c in cases})
    run.expect({"unknown_key", "garbled_key"} <= set(names),
               "the credential mistakes include a key that does not exist (wrong key, garbled key; R §二.1)",
               f"cases {names}")

    results = run.detect(lambda: [(c, anon.get(c[2], headers=c[3])) for c in cases],
                         "a 401 for every bad credential of R §二.1 / A §1.1")
    problems, messages = [], {}
    for (name, ai, path, _headers, names_it), resp in results:
        where = f"{name} on {'AI' if ai else 'render'} API ({path})"
        bad = refusal_problem(run, resp, 401, ErrorKind.UNAUTHORIZED)
        if bad:
            problems.append(f"{where}: {bad}")
            continue
        msg = message_of(run, resp)
        messages.setdefault((ai, name), msg)
        if not names_it.search(msg):
            problems.append(f"{where}: message {msg!r} does not name the mistake (/{names_it.pattern}/)")
    # one message per mistake: a client can tell them apart (the whitespace variants may share
    # one, and so may the two keys that do not exist: both are "not a valid key")
    def mistake(name: str) -> str:
        if name.startswith("whitespace"):
            return "whitespace"
        return "no such key" if name in ("unknown_key", "garbled_key") else name

    for ai in (False, True):
        seen: dict[str, str] = {}
        for (a, name), msg in messages.items():
            kind = mistake(name)
            if a == ai and seen.setdefault(msg, kind) != kind:
                problems.append(f"{'AI' if ai else 'render'} API: {seen[msg]} and {kind} get the same "
                                f"message {msg!r}")
    run.expect(not problems, "401 unauthorized, documented envelope, a message naming which mistake",
               "; ".join(problems))

    def new_credentials() -> tuple[Account, str]:
        fresh = platform.rotate_key(user)
        login = platform.login(user)
        run.expect(login.status_code == 200, "re-login gives a token", f"{login.status_code} {login.text[:200]}")
        return fresh, platform.token_of(login)

    fresh, token = run.remedy(new_credentials, "重新生成API Key; 重新登录获取新 token")
    render_paths = [path for _w, ai, path in probes if not ai]

    def works() -> bool:
        seen = []
        for what, headers, path, status in platform.authenticated_probes(fresh.api_key, token):
            r = anon.get(path, headers=headers)
            seen.append(f"{what}: {r.status_code} {r.text[:120] if r.status_code != status else ''}")
            run.expect(r.status_code == status, f"{what}: {status}", "; ".join(seen))
        for path in render_paths:
            r = anon.get(path, headers=platform.auth_headers(revoked.revoked.api_key))
            run.expect(r.status_code == 401, "the deleted key is still refused (401)",
                       f"deleted key {r.status_code} on {path}; {'; '.join(seen)}")
        return True

    run.recovered(works, "the new key and the new token work", poll=Poll(0.2, tolerate=()))
    run.steady_state_after()


# ---------------------------------------------------------------------------------------
@runs(A.RATE_LIMIT)
def test_rate_limit_429_retry_after_per_tenant(scenario_run: ScenarioRun, http: Callable[..., httpx.Client]
                                               ) -> None:
    run = scenario_run
    platform: Any = run.platform
    run.steady_state_before()
    noisy = http(run.open_account("api.rate_limit noisy", credits=100))
    quiet = http(run.open_account("api.rate_limit quiet", credits=100))
    read = platform.light_read()
    (spec,) = A.RATE_LIMIT.faults
    run.inject(spec)
    sent = {"n": 0, "ok": 0}

    def get(client: httpx.Client) -> httpx.Response:
        return client.request(read.method, read.path)

    def burst_until_429() -> httpx.Response | None:
        if sent["n"] >= BURST_BOUND:
            run.fail(f"429 rate limited within a burst of {BURST_BOUND} back-to-back requests",
                     f"{sent['ok']} of {sent['n']} answered 200: no per-key limit")
        sent["n"] += 1
        r = get(noisy)
        if r.status_code == 200:
            sent["ok"] += 1
        return r if r.status_code == 429 else None

    first = run.detect(burst_until_429, "the first 429 of the burst", poll=Poll(0.0, tolerate=()))
    other = get(quiet)
    still = get(noisy)
    bad = refusal_problem(run, first, 429, ErrorKind.RATE_LIMITED)
    run.expect(bad is None, "429 rate limited, with {'error': {'code': 'rate_limit_exceeded', ...}} where the "
               "platform follows the runbook's envelope", str(bad))
    header = first.headers.get("retry-after", "")
    body_ra: Any = run.platform.classify(first).retry_after  # type: ignore[union-attr]
    if run.platform.has(Feature.ENVELOPES):
        body_ra = platform.envelope_field(first, "retry_after")
    run.expect(header.isdigit() and int(header) >= 1 and isinstance(body_ra, (int, float)) and body_ra >= 1,
               "Retry-After header (whole seconds >= 1) and retry_after in the body",
               f"Retry-After={header!r}, retry_after={body_ra!r}")
    run.expect(other.status_code == 200, "another tenant is not throttled by this tenant's burst",
               f"other tenant got {other.status_code} {other.text[:200]} while the noisy one was limited")
    run.expect(still.status_code == 429, "the noisy tenant stays limited until Retry-After",
               f"{still.status_code} right after the first 429")
    wait_s = max(int(header), float(body_ra))
    # the runbook's client: time.sleep(retry_after), then one retry; an explicit scenario step
    run.remedy(lambda: threading.Event().wait(wait_s), f"wait Retry-After = {wait_s:g} s, then retry")

    def retry_once() -> bool:
        r = get(noisy)
        run.expect(r.status_code == 200, f"the first retry after waiting Retry-After ({wait_s:g} s) succeeds",
                   f"{r.status_code} {r.text[:200]}")
        return True

    run.recovered(retry_once, "the same client succeeds after Retry-After", poll=Poll(0.2, tolerate=()))
    run.steady_state_after()


# ---------------------------------------------------------------------------------------
@runs(A.VALIDATION)
def test_validation_400_names_the_field(scenario_run: ScenarioRun, http: Callable[..., httpx.Client]) -> None:
    run = scenario_run
    run.steady_state_before()
    cases = run.platform.invalid_requests(None)  # type: ignore[arg-type] # bodies above the size limit too
    run.expect(len(cases) > 0, "the platform names requests it must refuse as invalid", "none")
    # one tenant per case: a per-key limit must not answer instead of validation
    accounts = [run.open_account("api.validation", credits=100) for _ in cases]
    clients = [http(a) for a in accounts]
    (spec,) = A.VALIDATION.faults
    run.inject(spec)

    def send_all() -> list[tuple[Any, httpx.Response]]:
        return [(c, c.send(cl)) for c, cl in zip(cases, clients)]

    results = run.detect(send_all, "a 400 naming the field for every bad body")
    problems = []
    for case, resp in results:
        bad = refusal_problem(run, resp, 400, case.kind)
        err = run.platform.classify(resp)
        if bad:
            problems.append(f"{case.name}: {bad}")
        elif case.field is not None and (err is None or err.field != case.field):
            problems.append(f"{case.name}: field {err.field if err else None!r}, expected {case.field!r}")
        if looks_like_stack_trace(resp.text):
            problems.append(f"{case.name}: stack trace in the body")
    run.expect(not problems, "400 invalid_parameter / VALIDATION_ERROR with the right field, never 500",
               "; ".join(problems))

    fixed = run.remedy(lambda: run.submit(account=accounts[0], title="Test", duration=1.0),
                       "send the runbook's ✅ 正确 body (template_id string, price number)")
    run.recovered(lambda: fixed.ok or run.fail("the corrected request is accepted (202)", str(fixed)),
                  "the corrected request is accepted", poll=Poll(0.2, tolerate=()))
    run.steady_state_after()


# ---------------------------------------------------------------------------------------
@runs(A.NOT_FOUND)
def test_not_found_is_indistinguishable(scenario_run: ScenarioRun, http: Callable[..., httpx.Client]) -> None:
    run = scenario_run
    platform: Any = run.platform
    run.steady_state_before()
    owner = run.account
    job_id = run.accepted(run.submit(title="owned by A", duration=1.0), "the owner's render")
    ai = ai_submit(run, owner, "owned by A")
    ai_id = run.accepted(ai, "the owner's AI job")
    conv_id = platform.conversation_of(ai)
    other = http(run.open_account("api.not_found other", credits=100))
    (spec,) = A.NOT_FOUND.faults
    run.inject(spec)
    # (what, method, path of A's resource, path of a resource that does not exist)
    pairs = platform.owned_resources(job_id, ai_id, conv_id)

    def probe() -> list[tuple[Any, httpx.Response, httpx.Response]]:
        # two requests per pair from one key: honour the per-key limit's Retry-After, as a client must
        deadline = Deadline.after(run.detect_wait)
        ask = lambda method, path: honour_retry_after(lambda: other.request(method, path), deadline)  # noqa: E731
        return [(p, ask(p[1], p[2]), ask(p[1], p[3])) for p in pairs]

    results = run.detect(probe, "404 for another user's ids and for unknown ids")
    problems = []
    for (what, method, _theirs, _missing), r_theirs, r_missing in results:
        for label, r in (("another user's", r_theirs), ("unknown", r_missing)):
            bad = refusal_problem(run, r, 404, ErrorKind.NOT_FOUND)
            if bad:
                problems.append(f"{method} {what} ({label} id): {bad}")
        if r_theirs.content != r_missing.content or r_theirs.status_code != r_missing.status_code:
            problems.append(f"{method} {what}: another user's id answers {r_theirs.status_code} "
                            f"{r_theirs.text[:120]!r}, an unknown id {r_missing.status_code} {r_missing.text[:120]!r}")
        hdr = lambda r: sorted(k for k in r.headers if k not in ("date", "content-length"))  # noqa: E731
        if hdr(r_theirs) != hdr(r_missing):
            problems.append(f"{method} {what}: headers differ: {hdr(r_theirs)} vs {hdr(r_missing)}")
    run.expect(not problems, "404 NOT_FOUND, byte-identical for another user's and unknown ids",
               "; ".join(problems))

    def owner_sees_it() -> bool:
        answer = platform.job(owner, job_id)
        run.expect(answer.ok and answer.value.state is not JobState.CANCELLED,
                   "the owner still reads the job, and another user's DELETE did not cancel it", str(answer)
                   + (f" {answer.value.brief()}" if answer.value else ""))
        return True

    run.remedy(lambda: None, "none: the owner reads their own resources")
    run.recovered(owner_sees_it, "the owner reads the job", poll=Poll(0.2, tolerate=()))
    run.steady_state_after()


# ---------------------------------------------------------------------------------------
@runs(A.CREDITS)
def test_credits_402_and_never_negative(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    platform: Any = run.platform
    run.steady_state_before()
    # learn the costs from real jobs (the target's RENDER_COST / AI_COST)
    r = run.submit(title="cost probe", duration=1.0)
    run.accepted(r, "a render with enough credits")
    render_cost = platform.job_cost(r)
    a = ai_submit(run, run.account, "cost probe")
    run.accepted(a, "an AI job with enough credits")
    ai_cost = platform.job_cost(a)
    run.expect(render_cost > 0 and ai_cost > 0, "jobs cost credits", f"render {render_cost}, AI {ai_cost}")

    poor = run.open_account("api.credits poor", credits=0)
    racer = run.open_account("api.credits racer", credits=3 * render_cost)
    low, concurrent = A.CREDITS.faults
    below = min(render_cost, ai_cost) - 1
    run.inject(BalanceSet(platform, poor, below))
    run.journal.notes.append(f"{low.describe()}: {below}")

    def refused() -> tuple[Answer[str], Answer[str]]:
        return run.submit(account=poor, title="too poor", duration=1.0), ai_submit(run, poor, "too poor")

    rr, ra = run.detect(refused, "402 for a job the balance cannot pay")
    problems = []
    for api, answer in (("render", rr), ("AI", ra)):
        if answer.response is None:
            problems.append(f"{api}: {answer}")
        elif p := refusal_problem(run, answer.response, 402, ErrorKind.INSUFFICIENT_CREDITS):
            problems.append(f"{api}: {p}")
    balance = platform.balance(poor)
    if balance != below:
        problems.append(f"balance {balance} after two refused jobs, expected {below} (unchanged)")
    run.expect(not problems, "402 INSUFFICIENT_CREDITS, balance unchanged", "; ".join(problems))

    # concurrent submits against a balance worth exactly 3 renders
    run.inject(concurrent)
    n = 10
    platform.list_jobs(racer, limit=1)  # the racer's client exists before the race: the threads share its pool
    gate = threading.Barrier(n)
    answers: list[Answer[str] | Exception] = [Exception("not run")] * n

    def one(i: int) -> None:
        gate.wait(timeout=10)
        try:
            answers[i] = run.submit(account=racer, title=f"race {i}", duration=0.5)
        except Exception as exc:  # noqa: BLE001 - reported below
            answers[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    codes = [a.status if isinstance(a, Answer) else repr(a) for a in answers]
    accepted = sum(1 for a in answers if isinstance(a, Answer) and a.ok)
    left = platform.balance(racer)
    charged = platform.charges_of(racer)
    observed = (f"{accepted} of {n} concurrent submits accepted (answers {codes}), balance {left}, "
                f"ledger charges {charged}, start balance {3 * render_cost}, cost {render_cost}")
    run.expect(left >= 0 and accepted <= 3 and charged == accepted * render_cost
               and left == 3 * render_cost - charged,
               "balance never negative: at most 3 of 10 concurrent submits accepted, each charged once, "
               "the rest 402", observed)
    run.expect(all(isinstance(a, Answer) and (a.ok or a.kind in (ErrorKind.INSUFFICIENT_CREDITS,
                                                                   ErrorKind.RATE_LIMITED)) for a in answers),
               "every concurrent submit answered 202, 402 or 429", observed)

    run.remedy(lambda: platform.set_credits(poor, render_cost), "充值积分: top up to one render's cost")

    def paid() -> bool:
        answer = run.submit(account=poor, title="after top-up", duration=1.0)
        run.expect(answer.ok, "accepted after the top-up", str(answer))
        return True

    run.recovered(paid, "a submit after the top-up is accepted", poll=Poll(0.2, tolerate=()))
    run.steady_state_after()


# ---------------------------------------------------------------------------------------
#: per operation: the gate stays fast and deterministic (seeded); the resilience run goes deeper
GATE_EXAMPLES, DEEP_EXAMPLES = 25, 150
#: the reference stack fuzzed without its per-key rate limit (the engine waits out 429s, which
#: would turn a gate run into minutes of waiting); other targets run as they are
FUZZ_STACK = dict(workers=1, env={"RATE_LIMIT_KEY_RATE": "0"})


@runs(A.FUZZ)
@pytest.mark.stack(**FUZZ_STACK)
def test_fuzz_no_5xx_no_stack_traces(scenario_run: ScenarioRun, chaos_seed: int) -> None:
    from renderchaos.probes.fuzz import fuzz

    run = scenario_run
    run.steady_state_before()
    schema = run.platform.openapi()
    run.expect(bool(schema and schema.get("paths")), "the platform's OpenAPI document lists its endpoints",
               f"{str(schema)[:200]}")
    assert schema is not None
    examples = DEEP_EXAMPLES if run.profile.name == "resilience" else GATE_EXAMPLES
    # what to send as whom: credentials per security scheme, valid base bodies, ids to aim at, and the
    # operations that must not be fuzzed (they reach the internet, or act on the platform by design)
    options = run.platform.fuzz_options(run.open_account)
    explicit, generated = A.FUZZ.faults
    run.inject(explicit)
    run.inject(generated)
    budget = run.detect_wait
    result = run.detect(lambda: fuzz(schema, seed=chaos_seed, max_examples=examples, time_budget=budget, **options),
                        f"the explicit cases and {examples} generated requests per operation answered",
                        poll=Poll(0.1, tolerate=()))
    run.journal.notes.append(f"fuzz: {result.requests} requests ({result.explicit_cases} explicit) over "
                             f"{result.operations} operations in {result.elapsed_s:.0f}s, seed {result.seed}; "
                             f"statuses {dict(sorted(result.statuses.items()))}")
    run.journal.extra["fuzz"] = {"requests": result.requests, "explicit": result.explicit_cases,
                                 "statuses": result.statuses, "findings": [f.describe()[:600] for f in result.findings[:50]]}
    run.expect(not result.out_of_time, f"the fuzz run finishes within its {budget:.0f}s budget",
               f"out of time after {result.requests} requests")
    run.expect(not result.findings, "no 5xx, no stack trace in any body, every status code and response documented "
               "in the platform's own OpenAPI", lambda: f"replay with --chaos-seed {chaos_seed}: {result.summary(limit=12)}")
    run.remedy(lambda: None, "none needed")
    run.recovered(lambda: run.platform.health().ok, "the platform still healthy")
    run.steady_state_after()


# ---------------------------------------------------------------------------------------
SCHEMA_SQL = """
SELECT 'col', table_name, column_name || ':' || data_type || ':' || is_nullable || ':' || coalesce(column_default, '')
  FROM information_schema.columns WHERE table_schema = 'public'
UNION ALL
SELECT 'con', tc.table_name, tc.constraint_name || ':' || tc.constraint_type
  FROM information_schema.table_constraints tc WHERE tc.table_schema = 'public'
UNION ALL
SELECT 'idx', tablename, indexname || ':' || indexdef FROM pg_indexes WHERE schemaname = 'public'
UNION ALL
SELECT 'tbl', table_name, table_type FROM information_schema.tables WHERE table_schema = 'public'
ORDER BY 1, 2, 3
"""
COUNTED = ("users", "api_keys", "credits", "conversations")


def _db_snapshot(run: ScenarioRun) -> tuple[list[tuple[str, str, str]], dict[str, int], dict[str, int]]:
    import psycopg

    dsn = run.target.database_dsn
    assert dsn, "target has the database capability but no DSN"
    with psycopg.connect(dsn, autocommit=True) as conn:
        schema = [tuple(r) for r in conn.execute(SCHEMA_SQL).fetchall()]
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in COUNTED}
        balances = {str(u): b for u, b in conn.execute("SELECT user_id, balance FROM credits").fetchall()}
    return schema, counts, balances


@runs(A.SQL_INJECTION)
def test_sql_injection_changes_nothing(scenario_run: ScenarioRun, http: Callable[..., httpx.Client]) -> None:
    run = scenario_run
    platform: Any = run.platform
    run.steady_state_before()
    victim = run.account
    vjob = run.accepted(run.submit(title="victim's job", duration=1.0), "the victim's render")
    writer = run.open_account("api.sql_injection writer", credits=1000)
    # two zero-credit attackers per payload (render, AI): valid text ends at 402, never a job;
    # and the per-key limit never answers instead of the handler
    attackers = [(http(run.open_account("sqli render", credits=0)), http(run.open_account("sqli ai", credits=0)))
                 for _ in SQL_PAYLOADS]
    anon = http(None)
    schema0, counts0, balances0 = _db_snapshot(run)
    (spec,) = A.SQL_INJECTION.faults
    run.inject(spec)
    timeout = httpx.Timeout(run.wait(INJECTION_REQUEST))

    def attack() -> list[str]:
        problems = []
        for p, (r_api, a_api) in zip(SQL_PAYLOADS, attackers):
            for api, method, path, kw, kind in platform.injection_requests(p, victim.extra.get("phone"), vjob):
                client = {"r": r_api, "a": a_api, "-": anon}[api]
                try:
                    r = client.request(method, path, timeout=timeout, **kw)
                except httpx.HTTPError as exc:
                    problems.append(f"{method} {path} payload {p!r}: {type(exc).__name__} {exc}")
                    continue
                where = f"{method} {path} {kw} payload {p!r}"
                secs = r.elapsed.total_seconds()
                if r.status_code >= 500 or looks_like_stack_trace(r.text):
                    problems.append(f"{where} -> {r.status_code} {r.text[:200]}")
                elif r.status_code == 429:
                    problems.append(f"{where} -> 429 (rate limited: payload not tested)")
                elif kind == "read" and r.status_code < 400:
                    problems.append(f"{where} -> {r.status_code}: the payload read something {r.text[:200]}")
                elif kind == "list" and r.status_code == 200 and (rows := _rows(r)):
                    problems.append(f"{where} -> {rows} rows of other users")
                elif kind == "write" and r.status_code // 100 == 2:
                    problems.append(f"{where} -> {r.status_code}: a zero-credit user's job was accepted")
                if secs > INJECTION_ANSWER.seconds:
                    problems.append(f"{where} took {secs:.1f}s (an injected pg_sleep? limit {INJECTION_ANSWER})")
        return problems or ["ok"]

    problems = [p for p in run.detect(attack, "every payload answered without 5xx", poll=Poll(0.1, tolerate=()))
                if p != "ok"]
    # payloads where they are valid text: stored and shown literally
    stored = []
    for p in SQL_PAYLOADS[:3]:
        answer = run.submit(account=writer, title=p, duration=0.5)
        if not answer.ok or not answer.value:
            problems.append(f"title {p!r} (valid text) refused: {answer}")
        else:
            stored.append((p, answer.value))
    for p, jid in stored:
        title = platform.job_params(jid).get("title")
        if title != p:
            problems.append(f"title {p!r} stored as {title!r}")
    run.expect(not problems, "no 5xx, nothing read or written through a payload, payloads stored literally",
               "; ".join(problems[:8]) + (f" (+{len(problems) - 8} more)" if len(problems) > 8 else ""))

    def unchanged() -> bool:
        schema1, counts1, balances1 = _db_snapshot(run)
        diff = sorted(set(schema0) ^ set(schema1))
        run.expect(not diff, "schema unchanged (information_schema, pg_indexes)", f"changed: {diff[:6]}")
        run.expect(counts1 == counts0, f"row counts of {', '.join(COUNTED)} unchanged",
                   f"before {counts0}, after {counts1}")
        moved = {u: (b, balances1.get(u)) for u, b in balances0.items()
                 if balances1.get(u) != b and u not in (writer.id,)}
        run.expect(not moved, "no balance changed except the writer's (3 renders)", f"changed: {moved}")
        return True

    run.remedy(lambda: None, "none needed")
    run.recovered(unchanged, "schema, row counts and balances unchanged", poll=Poll(0.2, tolerate=()))
    run.steady_state_after()


def _rows(resp: httpx.Response) -> int:
    """How many items a list answer carries (0 for anything that is not a list answer)."""
    try:
        body = resp.json()
    except ValueError:
        return 0
    items = body.get("data") if isinstance(body, dict) else body
    return len(items) if isinstance(items, list) else 0


# ---------------------------------------------------------------------------------------
@runs(A.FLOOD)
def test_flood_limited_others_unaffected(scenario_run: ScenarioRun) -> None:
    run = scenario_run
    platform: Any = run.platform
    run.steady_state_before()
    read = platform.light_read()
    flooders = [run.open_account("api.flood flooder", credits=0) for _ in range(6)]
    observer = source_client(platform, run.open_account("api.flood observer", credits=0), OBSERVER_FROM)
    try:
        # 5 r/s: the observer's own per-key rate; 20 samples
        baseline = latencies(observer, read, 20, 0.2)
        run.expect(all(s.status == 200 for s in baseline), "the observer is served before the flood",
                   f"{[s.status for s in baseline]}")
        flood = Flood(platform, FLOOD_FROM, flooders, endpoint=read, threads=2, max_requests=600, max_seconds=6.0)
        run.inject(flood)
        run.detect(flood.limited, "the flooder gets 429/503", poll=Poll(0.1, tolerate=()))
        during = latencies(observer, read, 20, 0.2)
        run.remedy(flood.heal, "the flood stops")
        samples = flood.snapshot()
        elapsed = (flood.stopped or 0) - (flood.started or 0)
        served = sum(1 for s in samples if s.status // 100 == 2)
        limited = sum(1 for s in samples if s.status in (429, 503))
        other = sorted({s.status for s in samples} - {200, 429, 503})
        allowed = IP_BURST + IP_RATE * elapsed
        summary = (f"flood: {len(samples)} requests in {elapsed:.1f}s from {FLOOD_FROM}: {served} served, "
                   f"{limited} limited, other statuses {other}")
        run.journal.notes.append(summary)
        run.expect(served <= allowed * 1.25 + 5 and limited > 0,
                   f"at most burst {IP_BURST} + {IP_RATE:g} r/s x {elapsed:.1f}s = {allowed:.0f} served, "
                   "the excess 429/503", summary)
        first = next(s for s in samples if s.status in (429, 503))
        run.expect(first.retry_after is not None and first.retry_after.isdigit(),
                   "a limited answer says when to retry (Retry-After)", f"{first.status} {first.retry_after!r}")
        b95 = p95([s.latency for s in baseline])
        d95 = p95([s.latency for s in during])
        bound = max(2 * b95, b95 + LATENCY_FLOOR.seconds)
        note = f"observer p95 {b95 * 1000:.1f} ms before, {d95 * 1000:.1f} ms during the flood (bound {bound * 1000:.1f} ms)"
        run.journal.notes.append(note)
        run.expect(all(s.status == 200 for s in during), "the other client is always served during the flood",
                   f"statuses {[s.status for s in during]}")
        run.expect(d95 <= bound, "the other client's p95 within 2x of its baseline", note)

        flooder = source_client(platform, flooders[0], FLOOD_FROM)
        try:
            run.recovered(lambda: send(flooder, read).status == 200,
                          f"the flooder ({FLOOD_FROM}) is served again once it stops", poll=Poll(0.5))
        finally:
            flooder.close()
    finally:
        observer.close()
    run.steady_state_after()
