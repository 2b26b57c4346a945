"""Database and Redis probes: query plans, sessions, locks, key TTLs (capability ``database``).

The harness reaches Postgres directly (``stack.postgres.connect()``: autocommit, never through the
fault proxy) and Redis with ``stack.redis.client()``. These functions take an open connection /
client so they also work against an external target's DSN.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

#: The hot queries of the render API, as refstack runs them (R §三.3, A §4.3). Keep in step with
#: refstack/api/app.py list_videos and refstack/api/admin.py admin_jobs.
HOT_QUERIES: dict[str, str] = {
    # GET /v1/videos: a user's jobs, newest first, keyset page
    "jobs by user": "SELECT * FROM jobs WHERE user_id = %(user_id)s AND kind = 'render' "
                    "ORDER BY created_at DESC, id DESC LIMIT 21",
    # GET /v1/videos?status=pending
    "jobs by user and status": "SELECT * FROM jobs WHERE user_id = %(user_id)s AND kind = 'render' "
                               "AND status = 'pending' ORDER BY created_at DESC, id DESC LIMIT 21",
    # GET /admin/jobs?status=pending,running: what is in flight (the ledger and dashboards ask this)
    "jobs by status": "SELECT * FROM jobs WHERE status IN ('pending', 'running') "
                      "ORDER BY created_at DESC LIMIT 100",
    # GET /admin/jobs: newest jobs
    "jobs by created_at": "SELECT * FROM jobs ORDER BY created_at DESC LIMIT 100",
    # GET /admin/jobs?status=..&... last day's failures (by status and created_at)
    "recent failures": "SELECT * FROM jobs WHERE status = 'failed' AND created_at > now() - interval '1 day' "
                       "ORDER BY created_at DESC LIMIT 100",
}


@dataclass(frozen=True)
class Plan:
    query: str
    nodes: tuple[str, ...]  # "Seq Scan on jobs", "Index Scan using ix_... on jobs", ...
    text: str

    @property
    def seq_scans(self) -> list[str]:
        return [n for n in self.nodes if n.startswith("Seq Scan")]


def _walk(node: dict[str, Any], out: list[str]) -> None:
    kind = node.get("Node Type", "?")
    rel = node.get("Relation Name")
    idx = node.get("Index Name")
    label = kind + (f" using {idx}" if idx else "") + (f" on {rel}" if rel else "")
    out.append(label)
    for child in node.get("Plans", []):
        _walk(child, out)


def explain(conn: Any, sql: str, params: dict[str, Any] | None = None) -> Plan:
    """EXPLAIN (FORMAT JSON) ``sql``; the plan's nodes flattened in pre-order."""
    raw = conn.execute("EXPLAIN (FORMAT JSON) " + sql, params or {}).fetchone()[0]
    doc = raw if isinstance(raw, list) else json.loads(raw)
    nodes: list[str] = []
    _walk(doc[0]["Plan"], nodes)
    return Plan(sql, tuple(nodes), " -> ".join(nodes))


def sessions_by_state(conn: Any, database: str, application: str = "%") -> dict[str, int]:
    """A §4.1 step 4: ``SELECT count(*), state FROM pg_stat_activity GROUP BY state`` (``application``: a
    LIKE pattern on application_name)."""
    rows = conn.execute("SELECT coalesce(state, 'none'), count(*) FROM pg_stat_activity "
                        "WHERE datname = %s AND pid <> pg_backend_pid() AND application_name LIKE %s GROUP BY 1",
                        (database, application)).fetchall()
    return {state: n for state, n in rows}


def idle_in_transaction(conn: Any, database: str, older_than_s: float = 0.0) -> list[tuple[int, str, str]]:
    """Sessions `idle in transaction` longer than ``older_than_s``: (pid, application, query)."""
    return conn.execute(
        "SELECT pid, application_name, left(query, 200) FROM pg_stat_activity "
        "WHERE datname = %s AND state LIKE 'idle in transaction%%' "
        "AND now() - state_change > make_interval(secs => %s)", (database, older_than_s)).fetchall()


def lock_waiters(conn: Any, database: str, application_prefix: str = "refstack") -> list[tuple[int, str, str]]:
    """Sessions of the stack waiting on a lock (A §4.2 step 2): (pid, application, query)."""
    return conn.execute(
        "SELECT pid, application_name, left(query, 200) FROM pg_stat_activity "
        "WHERE datname = %s AND wait_event_type = 'Lock' AND application_name LIKE %s",
        (database, application_prefix + "%")).fetchall()


def long_active(conn: Any, database: str, older_than_s: float) -> list[tuple[int, str, float, str]]:
    """R §三.3 diagnosis: active statements running longer than ``older_than_s``."""
    return conn.execute(
        "SELECT pid, application_name, extract(epoch FROM now() - query_start)::float, left(query, 200) "
        "FROM pg_stat_activity WHERE datname = %s AND state = 'active' AND pid <> pg_backend_pid() "
        "AND now() - query_start > make_interval(secs => %s)", (database, older_than_s)).fetchall()


def keys_without_ttl(client: Any, pattern: str, limit: int = 10_000) -> tuple[int, list[str]]:
    """Scan ``pattern``; return (keys seen, keys with no expiry)."""
    seen, persistent = 0, []
    for key in client.scan_iter(match=pattern, count=500):
        seen += 1
        if client.ttl(key) == -1:
            persistent.append(key.decode() if isinstance(key, bytes) else key)
        if seen >= limit:
            break
    return seen, persistent
