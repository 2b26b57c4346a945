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
:data:`SQL_PAYLOADS` and :func:`looks_like_stack_trace`. Fuzzing lives in
:mod:`renderchaos.probes.fuzz` (Schemathesis over the platform's own OpenAPI).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

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
# what a response must never carry (api.fuzz, api.validation, api.sql_injection; the fuzz engine
# renderchaos.probes.fuzz runs it on every response)

TRACEBACK = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+|"
                       r"\b(?:psycopg|sqlalchemy)\.\w*(?:Error|Exception)|\w+Error: .*\n\s+at ", re.I)


def looks_like_stack_trace(text: str) -> bool:
    return bool(TRACEBACK.search(text))
