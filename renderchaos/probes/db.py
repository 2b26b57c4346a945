"""Database and Redis probes: query cost, sessions, locks, and the TTL of every key written.

The harness reaches Postgres directly (the target's ``database_dsn``: autocommit, never through
the fault proxy) and Redis with a client of the ``cache`` container. These functions take an
open connection / client; the SQL here is Postgres's own catalog (``pg_stat_activity``,
``EXPLAIN``), never a platform's schema: a platform's hot queries come from its adapter.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from renderchaos.errors import TargetError


# ---------------------------------------------------------------------------------------
# query cost (R §三.3: judge a hot query by what it reads, not by the name of its plan nodes)
@dataclass(frozen=True)
class QueryCost:
    """What one execution of a query cost, from ``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)``.

    ``rows_read``: rows the scans took from the tables (returned + removed by a filter or a
    recheck, times loops): a walk of the wrong index with a filter shows here even when no
    node is a Seq Scan. ``buffers``: shared blocks hit + read by the whole plan. ``ms``: the
    execution time Postgres measured.
    """

    query: str
    rows_read: int
    buffers: int
    ms: float
    rows_returned: int
    nodes: tuple[str, ...]  # "Seq Scan on jobs", "Index Scan using ix_... on jobs", ...

    @property
    def text(self) -> str:
        return " -> ".join(self.nodes)

    def __str__(self) -> str:
        return (f"{self.rows_read} rows read, {self.buffers} buffers, {self.ms:.1f} ms for {self.rows_returned} "
                f"rows ({self.text})")


def _walk(node: dict[str, Any], nodes: list[str]) -> int:
    """Pre-order node labels into ``nodes``; returns the rows read from tables under ``node``."""
    kind = node.get("Node Type", "?")
    rel = node.get("Relation Name")
    idx = node.get("Index Name")
    nodes.append(kind + (f" using {idx}" if idx else "") + (f" on {rel}" if rel else ""))
    read = 0
    if rel is not None:  # a scan of a table: what it took from it
        loops = int(node.get("Actual Loops", 1) or 1)
        per_loop = (float(node.get("Actual Rows", 0)) + float(node.get("Rows Removed by Filter", 0))
                    + float(node.get("Rows Removed by Index Recheck", 0)))
        read += round(per_loop * loops)
    for child in node.get("Plans", []):
        read += _walk(child, nodes)
    return read


def query_cost(plan_json: Any, sql: str = "") -> QueryCost:
    """A :class:`QueryCost` from the JSON document ``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)`` returns."""
    doc = plan_json if isinstance(plan_json, list) else json.loads(plan_json)
    top = doc[0]
    plan = top["Plan"]
    nodes: list[str] = []
    read = _walk(plan, nodes)
    buffers = int(plan.get("Shared Hit Blocks", 0)) + int(plan.get("Shared Read Blocks", 0))
    return QueryCost(sql, read, buffers, float(top.get("Execution Time", 0.0)),
                     round(float(plan.get("Actual Rows", 0)) * int(plan.get("Actual Loops", 1) or 1)),
                     tuple(nodes))


def explain_cost(conn: Any, sql: str, params: dict[str, Any] | None = None) -> QueryCost:
    """Run ``sql`` once under ``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)`` (a read: the hot
    queries are SELECTs) and return what it cost."""
    raw = conn.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, params or {}).fetchone()[0]
    return query_cost(raw, sql)


# ---------------------------------------------------------------------------------------
# sessions and locks (A §4.1 step 4, A §4.2 step 2)
def sessions_by_state(conn: Any, application: str = "%") -> dict[str, int]:
    """A §4.1 step 4: ``SELECT count(*), state FROM pg_stat_activity GROUP BY state`` in the
    current database (``application``: a LIKE pattern on application_name)."""
    rows = conn.execute("SELECT coalesce(state, 'none'), count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                        "AND application_name LIKE %s GROUP BY 1", (application,)).fetchall()
    return {state: n for state, n in rows}


def idle_in_transaction(conn: Any, older_than_s: float = 0.0) -> list[tuple[int, str, str]]:
    """Sessions `idle in transaction` longer than ``older_than_s``: (pid, application, query)."""
    return conn.execute(
        "SELECT pid, application_name, left(query, 200) FROM pg_stat_activity "
        "WHERE datname = current_database() AND state LIKE 'idle in transaction%%' "
        "AND now() - state_change > make_interval(secs => %s)", (older_than_s,)).fetchall()


def lock_waiters(conn: Any, application: str = "%") -> list[tuple[int, str, str]]:
    """Sessions waiting on a lock (A §4.2 step 2): (pid, application, query)."""
    return conn.execute(
        "SELECT pid, application_name, left(query, 200) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock' AND application_name LIKE %s",
        (application,)).fetchall()


def long_active(conn: Any, older_than_s: float, application: str = "%") -> list[tuple[int, str, float, str]]:
    """R §三.3 diagnosis: client statements active longer than ``older_than_s`` (ours excluded)."""
    return conn.execute(
        "SELECT pid, application_name, extract(epoch FROM now() - query_start)::float, left(query, 200) "
        "FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' "
        "AND backend_type = 'client backend' AND pid <> pg_backend_pid() AND application_name LIKE %s "
        "AND now() - query_start > make_interval(secs => %s)", (application, older_than_s)).fetchall()


# ---------------------------------------------------------------------------------------
# Redis: every key written, and its TTL right after the write (R §八 1.)
def keys_without_ttl(client: Any, pattern: str = "*", exclude: str | None = None,
                     limit: int = 10_000) -> tuple[int, list[str]]:
    """Scan ``pattern`` (keys starting with ``exclude`` skipped); return (keys seen, keys with no expiry)."""
    seen, persistent = 0, []
    for key in client.scan_iter(match=pattern, count=500):
        name = key.decode() if isinstance(key, bytes) else key
        if exclude and name.startswith(exclude):
            continue
        seen += 1
        if client.ttl(key) == -1:
            persistent.append(name)
        if seen >= limit:
            break
    return seen, persistent


#: keyspace events that do not write a value: removals, expiry bookkeeping, the source of a move
NOT_WRITES = frozenset({"del", "expired", "evicted", "expire", "rename_from", "move_from", "new"})


@dataclass
class KeyWrite:
    key: str
    event: str  # the keyspace event ("set", "lpush", "hset"...)
    at: float  # monotonic time the event was read
    pttl: int  # PTTL right after: >= 0 ms left, -1 no expiry, -2 already gone


@dataclass
class KeyWriteReport:
    writes: int = 0  # write events of the watched keys
    keys: set[str] = field(default_factory=set)  # keys written
    checked: set[str] = field(default_factory=set)  # keys whose TTL was read after a write
    without_ttl: dict[str, str] = field(default_factory=dict)  # key -> what was seen
    ignored: int = 0  # events of excluded keys (the harness's own)

    def summary(self) -> str:
        return (f"{self.writes} writes to {len(self.keys)} keys, TTL read right after a write for "
                f"{len(self.checked)}; {len(self.without_ttl)} written without a TTL; {self.ignored} events of "
                "the harness's own keys ignored")


class KeyWriteWatch:
    """Watch every key written to a Redis database while it runs, and read each key's TTL
    right after each write (keyspace notifications: ``notify-keyspace-events`` is switched on
    for the watch and put back as it was by :meth:`stop`).

    A write that leaves the key without an expiry is accepted only if an ``expire`` event for
    that key follows within ``grace`` seconds (a writer that sets the TTL in a second command);
    a ``persist`` (TTL removed) is a violation at once. Keys starting with one of ``exclude``
    (the harness's own filler) are not judged. Use as a context manager or start()/stop().
    """

    def __init__(self, client: Any, exclude: tuple[str, ...] = (), grace: float = 1.0) -> None:
        self.client = client
        self.exclude = exclude
        self.grace = grace
        self.db = int(client.connection_pool.connection_kwargs.get("db", 0))
        self.report = KeyWriteReport()
        self._pending: dict[str, KeyWrite] = {}  # key -> write seen without a TTL, not yet resolved
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pubsub: Any = None
        self._previous: str | None = None
        self._error: BaseException | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> "KeyWriteWatch":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        import redis

        try:
            self._previous = self.client.config_get("notify-keyspace-events").get("notify-keyspace-events", "")
            # K: keyspace channel (the key in the channel name, the event as the message);
            # A: every class of event (generic, string, list, set, hash, zset, expired, evicted, stream)
            self.client.config_set("notify-keyspace-events", "KA")
            self._pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            self._pubsub.psubscribe(f"__keyspace@{self.db}__:*")
        except redis.RedisError as exc:
            self._restore()
            raise TargetError(f"cannot watch the cache's key writes (CONFIG SET notify-keyspace-events, "
                              f"PSUBSCRIBE): {exc}; the cache must allow CONFIG and PSUBSCRIBE") from exc
        self._thread = threading.Thread(target=self._loop, name="redis key writes", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        prefix = f"__keyspace@{self.db}__:"
        drain_until: float | None = None
        while True:
            try:
                msg = self._pubsub.get_message(timeout=0.2)
            except Exception as exc:  # noqa: BLE001 - reported by stop()
                self._error = exc
                return
            if self._stop.is_set():
                # read what is already on the wire (bounded), then leave
                drain_until = drain_until or time.monotonic() + 1.0
                if msg is None or time.monotonic() > drain_until:
                    return
            if not msg or msg.get("type") != "pmessage":
                continue
            channel = _text(msg["channel"])
            self.observe(channel[len(prefix):] if channel.startswith(prefix) else channel, _text(msg["data"]))

    def observe(self, key: str, event: str, pttl: int | None = None, now: float | None = None) -> None:
        """One keyspace event; ``pttl`` is read from Redis when not given."""
        now = time.monotonic() if now is None else now
        with self._lock:
            rep = self.report
            if any(key.startswith(p) for p in self.exclude):
                rep.ignored += 1
                return
            self._resolve(now)
            if event == "expire":
                self._pending.pop(key, None)  # the TTL came in a second command
                return
            if event == "persist":
                rep.keys.add(key)
                rep.without_ttl.setdefault(key, "PERSIST removed its TTL")
                return
            if event in NOT_WRITES:
                return
            rep.writes += 1
            rep.keys.add(key)
            if pttl is None:
                pttl = int(self.client.pttl(key))
            if pttl == -2:
                return  # gone before we could read it (deleted, evicted): not judged by this write
            rep.checked.add(key)
            if pttl == -1:
                self._pending.setdefault(key, KeyWrite(key, event, now, pttl))
            else:
                self._pending.pop(key, None)

    def _resolve(self, now: float) -> None:
        for key, w in list(self._pending.items()):
            if now - w.at > self.grace:
                self.report.without_ttl.setdefault(key, f"'{w.event}' left it without a TTL, no EXPIRE within "
                                                        f"{self.grace:g}s")
                del self._pending[key]

    def stop(self) -> KeyWriteReport:
        """Stop watching, put the notification config back; the report (pending writes are
        judged after their grace)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5.0)
            self._thread = None
        if self._pubsub is not None:
            try:
                self._pubsub.close()
            except Exception:  # noqa: BLE001 - closing a subscription the server may have dropped
                pass
            self._pubsub = None
        self._restore()
        with self._lock:
            self._resolve(time.monotonic() + self.grace + 1.0)
        if self._error is not None:
            raise TargetError(f"watching the cache's key writes failed: {self._error}") from self._error
        return self.report

    def _restore(self) -> None:
        if self._previous is None:
            return
        import redis

        try:
            self.client.config_set("notify-keyspace-events", self._previous)
        except redis.RedisError as exc:
            raise TargetError(f"could not put notify-keyspace-events back to {self._previous!r}: {exc}") from exc
        self._previous = None


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
