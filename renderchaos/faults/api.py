"""Faults at the API's front door: bad credentials, bad input, bursts and floods (R §二, R §六.3, A §1).

Nothing here touches a container: the "fault" is what a client sends. Each kind is still a
:class:`~renderchaos.faults.base.Fault` so a :class:`~renderchaos.scenario.ScenarioRun` records
when it started (time to detect) and stops it on the way out, whatever happens:

* :class:`BadInput` - a marker: the faulty requests are the scenario's own; ``inject`` stamps
  the time, ``heal`` has nothing to undo (the remedy is a corrected request).
* :class:`KeyDeleted` / :class:`TokenExpired` - real state changes through the admin API.
* :class:`Flood` - a bounded flood (count and time) from another loopback address, in threads.

Plus plain helpers: :data:`BAD_CREDENTIALS` (the runbook's list of 401 causes, R §二.1),
:func:`loopback_client` (an httpx client bound to a source address), :func:`latencies`
(paced probe of a client's latency), :data:`SQL_PAYLOADS`, and hypothesis strategies for
fuzzing (:func:`fuzz_requests`).
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from urllib.parse import quote
from dataclasses import dataclass, field
from typing import Any, Callable

import httpx

from renderchaos.errors import FaultInjectionError
from renderchaos.probes.api import UA, Admin

# ---------------------------------------------------------------------------------------
# clients


def loopback_client(base_url: str, local_address: str | None = None, timeout: float = 10.0,
                    api_key: str | None = None) -> httpx.Client:
    """An httpx client whose connections leave from ``local_address`` (e.g. 127.0.0.2).

    The reference stack exempts 127.0.0.1 (the harness) from its per-IP flood limit, so a
    client that must be seen as "another machine" binds a different loopback address.
    """
    transport = httpx.HTTPTransport(local_address=local_address) if local_address else None
    headers = dict(UA)
    if api_key is not None:
        headers["Authorization"] = f"Bearer {api_key}"
    return httpx.Client(base_url=base_url, timeout=httpx.Timeout(timeout), headers=headers, transport=transport)


# ---------------------------------------------------------------------------------------
# bad credentials (R §二.1 常见错误, A §1.1)


@dataclass(frozen=True)
class BadCredential:
    """One way to get the Authorization header wrong, and the words a helpful 401 uses for it."""

    name: str
    description: str
    headers: Callable[[str], dict[str, str]]  # valid credential -> request headers
    names_it: re.Pattern[str]  # the 401 message must match this (it says WHICH mistake)


BAD_CREDENTIALS: tuple[BadCredential, ...] = (
    BadCredential("missing_header", "no Authorization header at all",
                  lambda key: {}, re.compile(r"missing|no authorization", re.I)),
    BadCredential("misspelt_header", "'Authorisation' (British spelling) instead of 'Authorization'",
                  lambda key: {"Authorisation": f"Bearer {key}"}, re.compile(r"authorisation|misspel", re.I)),
    BadCredential("no_bearer", "the key without the 'Bearer' keyword",
                  lambda key: {"Authorization": key}, re.compile(r"\bbearer\b", re.I)),
    BadCredential("whitespace_double_space", "key pasted with an extra space after 'Bearer'",
                  lambda key: {"Authorization": f"Bearer  {key}"}, re.compile(r"whitespace|space", re.I)),
    BadCredential("whitespace_inside", "key pasted with a space inside it (wrapped line)",
                  lambda key: {"Authorization": f"Bearer {key[:8]} {key[8:]}"}, re.compile(r"whitespace|space", re.I)),
)
#: credentials that are well-formed but no longer valid: the message names that too
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


class KeyDeleted:
    """Delete an API key through the admin API (R §二.1: 使用了已删除的Key). Not undone: the remedy
    the runbook prescribes is a NEW key."""

    def __init__(self, admin: Admin, key_id: str) -> None:
        self.admin, self.key_id = admin, key_id

    def describe(self) -> str:
        return f"API key {self.key_id} deleted"

    def inject(self) -> None:
        try:
            self.admin.delete_key(self.key_id)
        except Exception as exc:  # noqa: BLE001 - mapped at the boundary
            raise FaultInjectionError(f"could not delete API key {self.key_id}: {exc}", fault=self.describe()) from exc

    def heal(self) -> None:
        return None


class TokenExpired:
    """Have the target issue an already-expired access token (A §1.1: token 过期). ``token`` after inject."""

    def __init__(self, admin: Admin, user_id: str) -> None:
        self.admin, self.user_id = admin, user_id
        self.token: str | None = None

    def describe(self) -> str:
        return f"expired access token for user {self.user_id}"

    def inject(self) -> None:
        try:
            self.token = self.admin.token(self.user_id, expired=True)
        except Exception as exc:  # noqa: BLE001
            raise FaultInjectionError(f"could not issue an expired token: {exc}", fault=self.describe()) from exc

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


def send(client: httpx.Client, method: str, url: str, **kw: Any) -> Sample:
    t = time.perf_counter()
    try:
        r = client.request(method, url, **kw)
    except httpx.HTTPError as exc:
        return Sample(0, time.perf_counter() - t, time.monotonic(), body=f"{type(exc).__name__}: {exc}")
    return Sample(r.status_code, time.perf_counter() - t, time.monotonic(), r.headers.get("retry-after"),
                  r.text[:300])


def p95(values: list[float]) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))]


def latencies(client: httpx.Client, method: str, url: str, count: int, interval: float,
              stop: threading.Event | None = None) -> list[Sample]:
    """``count`` requests paced ``interval`` apart (a polite client, under its per-key limit).

    The pacing is the load's shape, not a wait for a condition.
    """
    stop = stop or threading.Event()
    out = []
    for _ in range(count):
        out.append(send(client, method, url))
        if stop.wait(interval):  # explicit pacing step, interruptible
            break
    return out


@dataclass
class Flood:
    """One client hammering the API from ``local_address`` with ``threads`` connections.

    Bounded in both count (``max_requests``) and time (``max_seconds``); ``heal`` stops it and
    joins the threads. ``samples`` holds every answer (status, latency).
    """

    base_url: str
    local_address: str
    api_keys: list[str]
    path: str = "/v1/videos?limit=1"
    threads: int = 2
    max_requests: int = 600
    max_seconds: float = 6.0
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._errors: list[str] = []
        self.started: float | None = None
        self.stopped: float | None = None

    def describe(self) -> str:
        return (f"flood from {self.local_address}: {self.threads} connections, GET {self.path}, "
                f"at most {self.max_requests} requests / {self.max_seconds:g}s")

    def _run(self, n: int) -> None:
        try:
            clients = [loopback_client(self.base_url, self.local_address, timeout=5.0, api_key=k)
                       for k in self.api_keys]
        except Exception as exc:  # noqa: BLE001 - reported through limited()
            self._errors.append(f"{type(exc).__name__}: {exc}")
            return
        i = n
        try:
            while not self._stop.is_set() and time.monotonic() - (self.started or 0) < self.max_seconds:
                with self._lock:
                    if len(self.samples) >= self.max_requests:
                        break
                s = send(clients[i % len(clients)], "GET", self.path)
                i += 1
                with self._lock:
                    self.samples.append(s)
        finally:
            for c in clients:
                c.close()

    def inject(self) -> None:
        # fail loudly if the source address cannot be used (no 127.0.0.2 on this host)
        probe = loopback_client(self.base_url, self.local_address, timeout=5.0)
        try:
            probe.get("/health")
        except httpx.HTTPError as exc:
            raise FaultInjectionError(f"cannot send from {self.local_address} to {self.base_url}: {exc}",
                                      fault=self.describe()) from exc
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
# fuzzing (hypothesis strategies; imported lazily so the harness does not need hypothesis to load)


@dataclass(frozen=True)
class FuzzRequest:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, bytes]
    body: bytes | None

    def short(self) -> str:
        body = "" if self.body is None else f" body={self.body[:300]!r}"
        return f"{self.method} {self.path} params={self.params} headers={self.headers}{body}"


#: endpoints the fuzzer leaves alone: they act on the stack by design (holding the DB pool,
#: publishing leak tasks) rather than on the caller's data
FUZZ_EXCLUDED = ("/admin/hold-connections", "/admin/leak")


def fuzz_requests(paths: dict[str, list[str]], ids: dict[str, str], keys: list[str], admin_token: str) -> Any:
    """A hypothesis strategy of :class:`FuzzRequest` over ``paths`` ({template: [methods]}).

    ``ids`` are real ids to mix into path parameters (so some requests reach real rows);
    ``keys`` are credentials of zero-credit users (nothing fuzzed is ever accepted as a job).
    """
    from hypothesis import strategies as st

    scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                        st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40),
                        st.sampled_from(["", " ", "\x00", "../../etc/passwd", "/etc/passwd", "NaN", "1e309",
                                         "template_abc123", "#112233", "white", "+8613800000000", "gpt-4o",
                                         "\ud7ff\ufffd", "a" * 2000, *SQL_PAYLOADS[:4]]))
    values = st.recursive(scalars, lambda ch: st.one_of(st.lists(ch, max_size=5),
                                                        st.dictionaries(st.text(max_size=12), ch, max_size=5)),
                          max_leaves=12)
    known_keys = ["template_id", "data", "input_asset", "audio_asset", "title", "width", "height", "duration",
                  "fps", "colours", "colors", "price", "preset", "model", "prompt", "conversation_id", "phone",
                  "password", "credits", "name", "expired", "ttl_seconds", "count", "seconds", "mb"]
    field_names = st.one_of(st.sampled_from(known_keys), st.text(max_size=12))

    @st.composite
    def json_body(draw: Any) -> bytes:
        valid = {"template_id": "template_abc123",
                 "data": {"title": "fuzz", "width": 320, "height": 240, "duration": 1, "price": 99,
                          "colours": ["white"]},
                 "model": "gpt-4o", "prompt": "hello", "phone": "+8613800000000", "password": "x" * 8}
        kind = draw(st.integers(0, 5))
        if kind == 0:  # a valid-looking body with one field changed / dropped / added
            body = json.loads(json.dumps(valid))
            target = body["data"] if draw(st.booleans()) else body
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
                                  st.sampled_from([b"{", b"{\"template_id\": ", b"[1,2", b"\xff\xfe{}", b"nul",
                                                   b"{" * 5000 + b"}" * 5000, b"[" * 100000, b"\x00",
                                                   b"{\"a\": 1e999999}", b"{\"data\": {\"price\": -0.0}}"])))
        if kind == 4:  # deep nesting
            depth = draw(st.integers(10, 3000))
            return ("{\"data\": " * depth + "1" + "}" * depth).encode()
        return b"x" * draw(st.sampled_from([65535, 65537, 200_000]))  # around MAX_BODY_BYTES

    def fill(template: str, draw: Any) -> str:
        def one(_m: re.Match[str]) -> str:
            choice = draw(st.integers(0, 3))
            if choice == 0:
                return draw(st.sampled_from(list(ids.values()) or [str(uuid.uuid4())]))
            if choice == 1:
                return str(uuid.uuid4())
            text = draw(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60))
            return quote(text, safe="") or "x"
        return re.sub(r"\{[^}]+\}", one, template)

    auth_values = st.one_of(
        st.sampled_from([f"Bearer {k}" for k in keys]),
        st.sampled_from([f"Bearer {admin_token}"]),
        st.text(max_size=40),
        st.sampled_from(["Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer tk_" + "0" * 40, "Bearer rk_x"]),
    )

    @st.composite
    def request(draw: Any) -> FuzzRequest:
        template = draw(st.sampled_from(sorted(paths)))
        method = draw(st.sampled_from(paths[template] + (["PATCH"] if draw(st.integers(0, 9)) == 0 else [])))
        path = fill(template, draw)
        headers: dict[str, str] = {}
        if draw(st.integers(0, 4)):
            auth = draw(auth_values)
            headers["Authorization" if draw(st.integers(0, 9)) else "Authorisation"] = auth
        params: dict[str, str] = {}
        if method == "GET" and draw(st.booleans()):
            for k in draw(st.lists(st.sampled_from(["limit", "status", "cursor", "kind", "user_id", "rotate"]),
                                   max_size=3, unique=True)):
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
    return re.sub(r"[\x00-\x1f\x7f]", "", value).strip(" \t").encode()


TRACEBACK = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+|"
                       r"\b(?:psycopg|sqlalchemy)\.\w*(?:Error|Exception)|\w+Error: .*\n\s+at ", re.I)


def looks_like_stack_trace(text: str) -> bool:
    return bool(TRACEBACK.search(text))
