"""Faults at the API's front door: bad credentials, bad input, bursts and floods (R §二, R §六.3, A §1).

Nothing here touches a container, and nothing here names a platform's endpoints: every request
is built from what the platform adapter hands over (its credentials, its cheap read, its seed
requests, its OpenAPI document). Each kind is still a :class:`~renderchaos.faults.base.Fault`
so a :class:`~renderchaos.scenario.ScenarioRun` records when it started (time to detect) and
stops it on the way out, whatever happens:

* :class:`BadInput` - a marker: the faulty requests are the scenario's own; ``inject`` stamps
  the time, ``heal`` has nothing to undo (the remedy is a corrected request).
* :class:`KeyRevoked` / :class:`TokenExpired` - real state changes through the adapter
  (``revoke_credentials``, ``expired_token``; feature ``auth``).
* :class:`BalanceSet` - an account's balance set through the adapter (feature ``credits``).
* :class:`Flood` - a bounded flood (count and time) from another loopback address, in threads.

Plus plain helpers: :func:`source_client` (the adapter's HTTP client, bound to a source
address), :func:`latencies` (paced probe of a client's latency), :func:`honour_retry_after`,
:data:`SQL_PAYLOADS`, and fuzzing in two parts: :func:`explicit_cases` (deterministic: malformed
JSON, lone surrogates, nulls, huge numbers and over-long strings in every field of the adapter's
seed requests) and :func:`generated_fuzz` (hypothesis over the platform's OpenAPI paths).
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence
from urllib.parse import quote

import httpx

from renderchaos.errors import FaultInjectionError

if TYPE_CHECKING:
    from renderchaos.platforms.base import Account, Endpoint, Platform
    from renderchaos.wait import Deadline

# ---------------------------------------------------------------------------------------
# clients


def source_client(platform: "Platform", account: "Account | None", local_address: str | None,
                  timeout: float = 10.0) -> httpx.Client:
    """The platform's HTTP client (with ``account``'s credentials) whose connections leave from
    ``local_address`` (e.g. 127.0.0.2). The caller closes it.

    The reference stack exempts 127.0.0.1 (the harness) from its per-IP flood limit, so a
    client that must be seen as "another machine" binds a different loopback address.
    """
    kwargs: dict[str, Any] = {"timeout": httpx.Timeout(timeout)}
    if local_address:
        kwargs["transport"] = httpx.HTTPTransport(local_address=local_address)
    return platform.http(account, **kwargs)


def honour_retry_after(send: Callable[[], httpx.Response], deadline: "Deadline") -> httpx.Response:
    """Send; on 429 wait the advertised ``Retry-After`` and send again, until ``deadline``.

    This is the client behaviour the render manual prescribes (R §二.2 api_call_with_retry), used
    where a scenario's subject is not the rate limit itself. The last answer is returned as is.
    """
    while True:
        resp = send()
        if resp.status_code != 429 or deadline.expired():
            return resp
        try:
            wait = float(resp.headers.get("Retry-After", "1"))
        except ValueError:
            wait = 1.0
        # the prescribed client step: wait exactly what the server asked, bounded by our deadline
        threading.Event().wait(min(max(wait, 0.05), deadline.remaining()))


# ---------------------------------------------------------------------------------------
# credentials (R §二.1 常见错误, A §1.1): the words a helpful 401 uses for a credential that
# is well-formed but no longer valid (the header mistakes come from the adapter's bad_credentials)

DELETED_KEY = re.compile(r"delet|revok", re.I)
EXPIRED_TOKEN = re.compile(r"expir", re.I)


class BadInput:
    """Marker fault: the scenario's own requests are the fault; nothing to inject or heal."""

    def __init__(self, what: str) -> None:
        self.what = what

    def describe(self) -> str:
        return f"bad input: {self.what}"

    def inject(self) -> None:  # the requests themselves are sent by the scenario
        return None

    def heal(self) -> None:
        return None


class KeyRevoked:
    """A key of ``account`` revoked through the adapter (R §二.1: 使用了已删除的Key); ``revoked``
    after inject is the account as a client still holding that key sees it. Not undone: the
    remedy the runbook prescribes is a NEW key."""

    names_it = DELETED_KEY

    def __init__(self, platform: "Platform", account: "Account") -> None:
        self.platform, self.account = platform, account
        self.revoked: "Account | None" = None

    def describe(self) -> str:
        key = self.revoked.extra.get("key_id") if self.revoked else None
        return f"an API key of account {self.account.id} revoked" + (f" ({key})" if key else "")

    def inject(self) -> None:
        try:
            self.revoked = self.platform.revoke_credentials(self.account)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - mapped at the boundary
            raise FaultInjectionError(f"could not revoke a key of account {self.account.id}: {exc}",
                                      fault=self.describe()) from exc

    def heal(self) -> None:
        return None


class TokenExpired:
    """Have the platform issue an already-expired access token (A §1.1: token 过期); ``token``
    after inject."""

    names_it = EXPIRED_TOKEN

    def __init__(self, platform: "Platform", account: "Account") -> None:
        self.platform, self.account = platform, account
        self.token: str | None = None

    def describe(self) -> str:
        return f"expired access token for account {self.account.id}"

    def inject(self) -> None:
        try:
            self.token = self.platform.expired_token(self.account)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001
            raise FaultInjectionError(f"could not issue an expired token: {exc}", fault=self.describe()) from exc

    def heal(self) -> None:
        return None


class BalanceSet:
    """Set ``account``'s balance to ``credits`` (A §1.4: a balance below the job's cost). Not
    undone: the remedy the runbook prescribes is a top-up (充值积分)."""

    def __init__(self, platform: "Platform", account: "Account", credits: int) -> None:
        self.platform, self.account, self.credits = platform, account, credits

    def describe(self) -> str:
        return f"balance of account {self.account.id} set to {self.credits}"

    def inject(self) -> None:
        try:
            self.platform.set_credits(self.account, self.credits)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001
            raise FaultInjectionError(f"could not set the balance of {self.account.id}: {exc}",
                                      fault=self.describe()) from exc

    def heal(self) -> None:
        return None


# ---------------------------------------------------------------------------------------
# load: burst and flood


@dataclass
class Sample:
    status: int  # 0 = transport error
    latency: float
    at: float  # monotonic
    retry_after: str | None = None
    body: str = ""


def send(client: httpx.Client, endpoint: "Endpoint", **kw: Any) -> Sample:
    """One request to ``endpoint``; a transport error is a sample with status 0."""
    t = time.perf_counter()
    try:
        r = client.request(endpoint.method, endpoint.path, json=endpoint.json, **kw)
    except httpx.HTTPError as exc:
        return Sample(0, time.perf_counter() - t, time.monotonic(), body=f"{type(exc).__name__}: {exc}")
    return Sample(r.status_code, time.perf_counter() - t, time.monotonic(), r.headers.get("retry-after"),
                  r.text[:300])


def p95(values: list[float]) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))]


def latencies(client: httpx.Client, endpoint: "Endpoint", count: int, interval: float,
              stop: threading.Event | None = None) -> list[Sample]:
    """``count`` requests paced ``interval`` apart (a polite client, under its per-key limit).

    The pacing is the load's shape, not a wait for a condition.
    """
    stop = stop or threading.Event()
    out = []
    for _ in range(count):
        out.append(send(client, endpoint))
        if stop.wait(interval):  # explicit pacing step, interruptible
            break
    return out


@dataclass
class Flood:
    """One client hammering the platform from ``local_address`` with ``threads`` connections,
    rotating over ``accounts``' credentials, on ``endpoint`` (default: the adapter's cheap
    authenticated read, ``platform.light_read()``).

    Bounded in both count (``max_requests``) and time (``max_seconds``); ``heal`` stops it and
    joins the threads. ``samples`` holds every answer (status, latency).
    """

    platform: "Platform"
    local_address: str
    accounts: list["Account"]
    endpoint: "Endpoint | None" = None
    threads: int = 2
    max_requests: int = 600
    max_seconds: float = 6.0
    request_timeout: float = 5.0
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.endpoint is None:
            self.endpoint = self.platform.light_read()  # type: ignore[attr-defined]
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._errors: list[str] = []
        self.started: float | None = None
        self.stopped: float | None = None

    def describe(self) -> str:
        assert self.endpoint is not None
        return (f"flood from {self.local_address}: {self.threads} connections, {self.endpoint.method} "
                f"{self.endpoint.path}, at most {self.max_requests} requests / {self.max_seconds:g}s")

    def _client(self, account: "Account | None") -> httpx.Client:
        return source_client(self.platform, account, self.local_address, timeout=self.request_timeout)

    def _run(self, n: int) -> None:
        assert self.endpoint is not None
        try:
            clients = [self._client(a) for a in self.accounts]
        except Exception as exc:  # noqa: BLE001 - reported through limited()
            self._errors.append(f"{type(exc).__name__}: {exc}")
            return
        i = n
        try:
            while not self._stop.is_set() and time.monotonic() - (self.started or 0) < self.max_seconds:
                with self._lock:
                    if len(self.samples) >= self.max_requests:
                        break
                s = send(clients[i % len(clients)], self.endpoint)
                i += 1
                with self._lock:
                    self.samples.append(s)
        finally:
            for c in clients:
                c.close()

    def inject(self) -> None:
        assert self.endpoint is not None
        # fail loudly if the source address cannot be used (no 127.0.0.2 on this host)
        probe = self._client(self.accounts[0] if self.accounts else None)
        try:
            probe.request(self.endpoint.method, self.endpoint.path, json=self.endpoint.json)
        except httpx.HTTPError as exc:
            raise FaultInjectionError(f"cannot send from {self.local_address} to {self.platform.endpoint.api_url}: "
                                      f"{exc}", fault=self.describe()) from exc
        finally:
            probe.close()
        self.started = time.monotonic()
        for n in range(self.threads):
            t = threading.Thread(target=self._run, args=(n,), name=f"flood-{self.local_address}-{n}", daemon=True)
            t.start()
            self._workers.append(t)

    def heal(self) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(timeout=10.0)
        self._workers.clear()
        if self.stopped is None and self.started is not None:
            self.stopped = time.monotonic()

    def done(self) -> bool:
        return all(not t.is_alive() for t in self._workers)

    def snapshot(self) -> list[Sample]:
        with self._lock:
            return list(self.samples)

    def limited(self) -> "FloodStatus":
        """Truthy once the target has refused part of the flood (429 / 503); repr names the counts."""
        counts: dict[int, int] = {}
        for s in self.snapshot():
            counts[s.status] = counts.get(s.status, 0) + 1
        return FloodStatus(counts, list(self._errors))


@dataclass(frozen=True)
class FloodStatus:
    counts: dict[int, int]
    errors: list[str]

    def __bool__(self) -> bool:
        return bool(self.counts.get(429) or self.counts.get(503))

    def __repr__(self) -> str:
        return f"flood answers by status {self.counts}" + (f", client errors {self.errors}" if self.errors else "")


# ---------------------------------------------------------------------------------------
# SQL injection payloads


SQL_PAYLOADS: tuple[str, ...] = (
    "' OR '1'='1",
    "' OR 1=1 --",
    "\" OR \"\"=\"",
    "'; DROP TABLE jobs; --",
    "'; DROP TABLE users CASCADE; --",
    "1; ALTER TABLE credits DROP CONSTRAINT IF EXISTS credits_balance_check; --",
    "' UNION SELECT id, user_id, kind, status FROM jobs --",
    "' UNION SELECT NULL, NULL, NULL --",
    "00000000-0000-0000-0000-000000000000' OR '1'='1",
    "1' AND SLEEP(5) --",
    "'; SELECT pg_sleep(5); --",
    "' || (SELECT version()) || '",
    "admin'--",
    "%' OR 1=1 --",
    "\\'; UPDATE credits SET balance = 999999; --",
    "$$; CREATE TABLE pwned (x int); $$",
    "';COPY (SELECT '') TO PROGRAM 'id'; --",
    "\u02bc OR 1=1 --",  # modifier-letter apostrophe (normalisation tricks)
)


# ---------------------------------------------------------------------------------------
# fuzzing: explicit cases every run, then generated ones (hypothesis, imported lazily so the
# harness does not need hypothesis to load)

#: a lone UTF-16 surrogate: valid JSON syntax (``"\ud800"``), not valid Unicode
LONE_SURROGATE = "\ud800"
#: longest file-name component on Linux; one more byte is a classic unchecked 500 (ENAMETOOLONG)
NAME_MAX = 255
OVERLONG = (NAME_MAX + 1, 4097)
HUGE_INTEGERS = (-1, 2**31, 2**53 + 1, 10**12, 10**18, 2**63, 10**30)
HUGE_NUMBERS = (-1e308, 1e308)
MALFORMED_JSON: tuple[tuple[str, bytes], ...] = (
    ("truncated object", b'{"'),
    ("unterminated object", b"{"),
    ("bare word", b"not json"),
    ("trailing comma", b'{"a": 1,}'),
    ("missing value", b'{"a": }'),
    ("invalid UTF-8", b'{"a": "\xff\xfe"}'),
)
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


@dataclass(frozen=True)
class FuzzRequest:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, bytes]
    body: bytes | None
    what: str = ""  # explicit cases: what was changed in the seed request

    def short(self) -> str:
        body = "" if self.body is None else f" body={self.body[:300]!r}"
        what = f" [{self.what}]" if self.what else ""
        return f"{self.method} {self.path}{what} params={self.params} headers={self.headers}{body}"


@dataclass
class FuzzReport:
    """What one fuzz phase sent, the statuses that came back, and every bad answer: a 5xx, a
    stack trace in a body, no answer at all; for explicit cases also a 429 that outlived the
    deadline (the case was not tested)."""

    phase: str  # "explicit" | "generated"
    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)  # 0: no answer
    problems: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # one line per problem: request and what came back
    resent: int = 0  # requests sent again after the connection dropped under them

    def __bool__(self) -> bool:  # a phase that ran is an observation, whatever it found
        return True

    def record(self, req: FuzzRequest, resp: httpx.Response | None, error: str | None = None) -> None:
        self.requests += 1
        status = resp.status_code if resp is not None else 0
        self.statuses[status] = self.statuses.get(status, 0) + 1
        line = f"{req.method} {req.path}" + (f" [{req.what}]" if req.what else "")
        if resp is None:
            self._problem(f"{req.short()}: transport error {error}", f"{line} -> no answer")
            return
        trace = looks_like_stack_trace(resp.text)
        if resp.status_code >= 500:
            self._problem(f"{req.short()} -> {resp.status_code}"
                          f"{' with a stack trace in the body' if trace else ''} {resp.text[:300]}",
                          f"{line} -> {resp.status_code}")
        elif trace:
            self._problem(f"{req.short()} -> {resp.status_code}: stack trace in the body {resp.text[:300]}",
                          f"{line} -> {resp.status_code} with a stack trace")
        elif resp.status_code == 429 and self.phase == "explicit":
            self._problem(f"{req.short()} -> 429 until the deadline: this explicit case was not tested",
                          f"{line} -> 429 (not tested)")

    def _problem(self, full: str, line: str) -> None:
        self.problems.append(full)
        self.failed.append(line)

    @property
    def reached(self) -> int:
        """Requests answered by something other than the rate limiter."""
        return sum(n for s, n in self.statuses.items() if s != 429)

    def summary(self) -> str:
        again = f", {self.resent} sent again on a fresh connection" if self.resent else ""
        return f"{self.phase}: {self.requests} requests, statuses {dict(sorted(self.statuses.items()))}{again}"


def send_fuzz(http: httpx.Client, req: FuzzRequest, report: FuzzReport,
              deadline: "Deadline | None" = None) -> httpx.Response | None:
    """Send ``req`` and record the answer in ``report``. With a ``deadline``, a 429 is waited
    out (Retry-After) so the rate limiter never answers instead of the code under test."""
    def once() -> httpx.Response:
        return http.request(req.method, req.path, params=req.params or None, headers=req.headers, content=req.body)

    def answer() -> httpx.Response:
        return honour_retry_after(once, deadline) if deadline is not None else once()

    try:
        try:
            resp = answer()
        except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError):
            # a kept-alive connection the server closed (after a 500, say) fails the next request
            # sent on it: once more on a fresh connection; no answer twice is a problem
            report.resent += 1
            resp = answer()
    except httpx.HTTPError as exc:
        report.record(req, None, f"{type(exc).__name__}: {exc}")
        return None
    report.record(req, resp)
    return resp


def _fields(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every field of a JSON document (nested objects and array items too), with its path."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        path = (*prefix, key)
        yield path, value
        yield from _fields(value, path)


def _mutants(value: Any) -> Iterator[tuple[str, Any]]:
    """What to put in place of ``value``: null always; a lone surrogate and over-long text for
    strings; huge and negative numbers for numbers."""
    yield "null", None
    if isinstance(value, str):
        yield "a lone surrogate", LONE_SURROGATE
        for n in OVERLONG:
            yield f"{n} characters", "a" * n
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        for big in HUGE_INTEGERS:
            yield f"{big}", big
        if isinstance(value, float):
            for big in HUGE_NUMBERS:
                yield f"{big:g}", big


_ABSENT = object()


def _with(body: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A copy of ``body`` with the field at ``path`` set to ``value`` (removed: ``_ABSENT``)."""
    out = json.loads(json.dumps(body))
    node = out
    for key in path[:-1]:
        node = node[key]
    if value is _ABSENT:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return out


def explicit_cases(seeds: Sequence[tuple["Endpoint", Mapping[str, str] | None]],
                   tenants: Sequence[Mapping[str, str]]) -> list[FuzzRequest]:
    """The deterministic part of api.fuzz, sent every run so a gate never misses them by luck.

    ``seeds`` are valid requests with a JSON body (from the adapter's ``fuzz_seeds``), each with
    the headers to send (``None``: a tenant's credentials, taken in turn from ``tenants`` so a
    per-key limit does not answer instead of the handler). For each seed: malformed JSON bodies;
    then, for every field of its body (nested ones too), the seed changed in that one place: the
    field absent, null, a lone surrogate and over-long strings (NAME_MAX + 1, 4 KiB) for strings,
    huge and negative numbers for numbers.
    """
    out: list[FuzzRequest] = []
    seen: set[tuple[str, str, bytes]] = set()
    turn = 0

    def headers(given: Mapping[str, str] | None) -> dict[str, bytes]:
        nonlocal turn
        if given is None:
            h = dict(tenants[turn % len(tenants)]) if tenants else {}
            turn += 1
        else:
            h = dict(given)
        h["Content-Type"] = "application/json"
        return {k: _wire(v) for k, v in h.items()}

    def add(ep: "Endpoint", given: Mapping[str, str] | None, body: bytes, what: str) -> None:
        if (ep.method, ep.path, body) not in seen:
            seen.add((ep.method, ep.path, body))
            out.append(FuzzRequest(ep.method, ep.path, {}, headers(given), body, what))

    for ep, given in seeds:
        if not isinstance(ep.json, dict):
            continue
        whole = json.dumps(ep.json).encode()
        for name, raw in (*MALFORMED_JSON, ("the seed cut in half", whole[: len(whole) // 2])):
            add(ep, given, raw, f"malformed JSON: {name}")
        for path, value in _fields(ep.json):
            where = ".".join(str(p) for p in path)
            if isinstance(path[-1], str):  # an object's member: also the seed without it
                add(ep, given, json.dumps(_with(ep.json, path, _ABSENT)).encode(), f"{where}: absent")
            for what, new in _mutants(value):
                add(ep, given, json.dumps(_with(ep.json, path, new)).encode(), f"{where}: {what}")
    return out


def openapi_paths(openapi: Mapping[str, Any], excluded: Sequence[str] = ()) -> dict[str, list[str]]:
    """{path template: [METHODS]} of an OpenAPI document, without paths starting with ``excluded``."""
    return {p: sorted(m.upper() for m in ops if m.lower() in HTTP_METHODS)
            for p, ops in (openapi.get("paths") or {}).items()
            if not p.startswith(tuple(excluded)) and isinstance(ops, dict)}


def generated_fuzz(http: httpx.Client, openapi: Mapping[str, Any], *, ids: Mapping[str, str],
                   credentials: Sequence[Mapping[str, str]], seed: int, examples: int,
                   excluded: Sequence[str] = (), seed_bodies: Sequence[Any] = ()) -> FuzzReport:
    """The generated part of api.fuzz: ``examples`` hypothesis-generated requests (methods,
    paths with real and random ids, headers, query strings, bodies) over the paths of
    ``openapi``, seeded with ``seed``; every answer checked for 5xx and stack traces.

    One function on purpose: a schema-driven engine (Schemathesis over the same OpenAPI
    document) can take its place with the same inputs and return the same report.
    """
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed

    report = FuzzReport("generated")
    paths = openapi_paths(openapi, excluded)
    if not paths:
        report.problems.append("the OpenAPI document lists no paths to fuzz")
        return report
    strategy = fuzz_requests(paths, ids, credentials, seed_bodies, _query_names(openapi))

    @hypothesis_seed(seed)
    @settings(max_examples=examples, database=None, deadline=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck), derandomize=False)
    @given(strategy)
    def one(req: FuzzRequest) -> None:
        send_fuzz(http, req, report)

    one()
    return report


def _query_names(openapi: Mapping[str, Any]) -> list[str]:
    names = {"limit", "cursor", "status", "kind", "user_id", "id"}
    for ops in (openapi.get("paths") or {}).values():
        for op in (ops.values() if isinstance(ops, dict) else ()):
            for p in (op.get("parameters") or []) if isinstance(op, dict) else ():
                if isinstance(p, dict) and p.get("in") == "query" and isinstance(p.get("name"), str):
                    names.add(p["name"])
    return sorted(names)


def _keys_and_strings(node: Any, keys: set[str], strings: set[str]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            keys.add(str(k))
            _keys_and_strings(v, keys, strings)
    elif isinstance(node, list):
        for v in node:
            _keys_and_strings(v, keys, strings)
    elif isinstance(node, str):
        strings.add(node)


def fuzz_requests(paths: dict[str, list[str]], ids: Mapping[str, str], credentials: Sequence[Mapping[str, str]],
                  seed_bodies: Sequence[Any] = (), query_names: Sequence[str] = ("limit", "cursor", "status")) -> Any:
    """A hypothesis strategy of :class:`FuzzRequest` over ``paths`` ({template: [methods]}).

    ``ids`` are real ids to mix into path parameters (so some requests reach real rows);
    ``credentials`` are header sets (zero-credit tenants, so nothing fuzzed is ever accepted as
    a job, and any harness credential the platform has); ``seed_bodies`` are valid bodies whose
    field names and values the generated bodies start from.
    """
    from hypothesis import strategies as st

    keys: set[str] = set()
    strings: set[str] = set()
    for b in seed_bodies:
        _keys_and_strings(b, keys, strings)
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                        st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40),
                        st.sampled_from(["", " ", "\x00", "../../etc/passwd", "/etc/passwd", "NaN", "1e309",
                                         "\ud7ff\ufffd", LONE_SURROGATE, "a" * (NAME_MAX + 1), "a" * 2000,
                                         *sorted(strings), *SQL_PAYLOADS[:4]]))
    values = st.recursive(scalars, lambda ch: st.one_of(st.lists(ch, max_size=5),
                                                        st.dictionaries(st.text(max_size=12), ch, max_size=5)),
                          max_leaves=12)
    known_keys = sorted(keys | {"id", "name", "data"})
    field_names = st.one_of(st.sampled_from(known_keys), st.text(max_size=12))
    bodies = [b for b in seed_bodies if isinstance(b, dict)] or [{}]

    @st.composite
    def json_body(draw: Any) -> bytes:
        kind = draw(st.integers(0, 5))
        if kind == 0:  # a valid-looking body with one field changed / dropped / added
            body = json.loads(json.dumps(draw(st.sampled_from(bodies))))
            nested = [v for v in body.values() if isinstance(v, dict)]
            target = draw(st.sampled_from(nested)) if nested and draw(st.booleans()) else body
            name = draw(field_names)
            if draw(st.booleans()) and name in target:
                del target[name]
            else:
                target[name] = draw(values)
            return json.dumps(body, allow_nan=False).encode()
        if kind == 1:
            return json.dumps(draw(st.dictionaries(field_names, values, max_size=8))).encode()
        if kind == 2:
            return json.dumps(draw(values)).encode()
        if kind == 3:  # raw bytes: malformed JSON, invalid UTF-8, truncated documents
            return draw(st.one_of(st.binary(max_size=200),
                                  st.sampled_from([b"{", b"{\"a\": ", b"[1,2", b"\xff\xfe{}", b"nul",
                                                   b"{" * 5000 + b"}" * 5000, b"[" * 100000, b"\x00",
                                                   b"{\"a\": 1e999999}", b"{\"data\": {\"a\": -0.0}}"])))
        if kind == 4:  # deep nesting
            depth = draw(st.integers(10, 3000))
            return ("{\"data\": " * depth + "1" + "}" * depth).encode()
        return b"x" * draw(st.sampled_from([65535, 65537, 200_000]))  # around a 64 KiB body limit

    def fill(template: str, draw: Any) -> str:
        def one(_m: re.Match[str]) -> str:
            choice = draw(st.integers(0, 3))
            if choice == 0 and ids:
                return draw(st.sampled_from(list(ids.values())))
            if choice <= 1:  # a well-formed id that names nothing (drawn: replayable from the seed)
                return str(draw(st.uuids()))
            text = draw(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60))
            return quote(text, safe="") or "x"
        return re.sub(r"\{[^}]+\}", one, template)

    header_sets = [dict(c) for c in credentials] or [{"Authorization": "Bearer x"}]
    auth_names = sorted({k for c in header_sets for k in c}) or ["Authorization"]
    garbage = st.one_of(st.text(max_size=40), st.sampled_from(["Bearer", "Bearer ", "Basic dXNlcjpwYXNz",
                                                                "Bearer " + "0" * 40, "Bearer x"]))

    @st.composite
    def auth(draw: Any) -> dict[str, str]:
        if draw(st.integers(0, 2)):
            chosen = dict(draw(st.sampled_from(header_sets)))
        else:
            chosen = {draw(st.sampled_from(auth_names)): draw(garbage)}
        if draw(st.integers(0, 9)) == 0:  # the header name misspelt ('Authorisation')
            chosen = {k.replace("z", "s").replace("Z", "S"): v for k, v in chosen.items()}
        return chosen

    @st.composite
    def request(draw: Any) -> FuzzRequest:
        template = draw(st.sampled_from(sorted(paths)))
        methods = paths[template] or ["GET"]
        method = draw(st.sampled_from(methods + (["PATCH"] if draw(st.integers(0, 9)) == 0 else [])))
        path = fill(template, draw)
        headers: dict[str, str] = {}
        if draw(st.integers(0, 4)):
            headers.update(draw(auth()))
        params: dict[str, str] = {}
        if method == "GET" and draw(st.booleans()):
            for k in draw(st.lists(st.sampled_from(list(query_names)), max_size=3, unique=True)):
                params[k] = draw(st.one_of(st.text(max_size=30), st.integers(-10, 1000).map(str),
                                           st.sampled_from(["pending", "completed", "MA==", "1,2"])))
        body = None
        if method in ("POST", "PUT", "PATCH"):
            body = draw(st.one_of(json_body(), st.just(b"")))
            headers["Content-Type"] = draw(st.sampled_from(["application/json", "text/plain",
                                                            "application/x-www-form-urlencoded"]))
        return FuzzRequest(method, path, params, {k: _wire(v) for k, v in headers.items()}, body)

    return request()


def _wire(value: str) -> bytes:
    """A header value HTTP/1.1 can carry (h11 refuses control characters and outer whitespace)."""
    return re.sub(r"[\x00-\x1f\x7f]", "", value).strip(" \t").encode("utf-8", "replace")


TRACEBACK = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+|"
                       r"\b(?:psycopg|sqlalchemy)\.\w*(?:Error|Exception)|\w+Error: .*\n\s+at ", re.I)


def looks_like_stack_trace(text: str) -> bool:
    return bool(TRACEBACK.search(text))
