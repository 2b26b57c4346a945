"""Data-store faults: an exhausted connection pool, Redis at maxmemory, a dropped database.

Each is a Fault (``describe / inject / heal``, heal idempotent) for ``ScenarioRun.inject``, plus the
backup / restore steps of the R §六.2 drill (pg_dump / pg_restore inside the Postgres container).
"""

from __future__ import annotations

import secrets
import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from renderchaos.errors import FaultHealError, FaultInjectionError
from renderchaos.faults.container import exec_in
from renderchaos.wait import Deadline, Poll, wait_for

if TYPE_CHECKING:
    from renderchaos.stack.services import Postgres, Service


@dataclass
class HeldConnections:
    """Every pooled connection of one API process checked out for ``seconds`` (A §4.1).

    Through the refstack admin API (``POST /admin/hold-connections``): it acts on the process that
    answers, so run it against ``WEB_CONCURRENCY=1``. The hold cannot be cut short: heal waits (bounded)
    until it has expired.
    """

    api_url: str
    admin_token: str
    seconds: int = 10
    count: int | None = None  # default: pool size + overflow
    held_until: float = field(default=0.0, init=False)
    pid: int | None = field(default=None, init=False)

    def describe(self) -> str:
        return f"hold {self.count or 'all'} pooled API connections for {self.seconds}s"

    def inject(self) -> None:
        body: dict[str, Any] = {"seconds": self.seconds}
        if self.count is not None:
            body["count"] = self.count
        try:
            resp = httpx.post(f"{self.api_url}/admin/hold-connections", json=body, timeout=10,
                              headers={"Authorization": f"Bearer {self.admin_token}"})
        except httpx.HTTPError as exc:
            raise FaultInjectionError(f"POST /admin/hold-connections failed: {exc}") from exc
        if resp.status_code != 202:
            raise FaultInjectionError(f"POST /admin/hold-connections answered {resp.status_code}: {resp.text[:300]}")
        self.pid = resp.json().get("pid")
        self.held_until = Deadline.after(self.seconds).at

    def heal(self) -> None:
        if not self.held_until:
            return
        left = Deadline(self.held_until, self.seconds)
        if not left.expired():
            # the hold ends by itself; nothing to undo but to let it run out (bounded)
            try:
                wait_for(lambda: left.expired(), what="the connection hold to end",
                         timeout=left.remaining() + 1.0, poll=Poll(0.2))
            except Exception as exc:  # noqa: BLE001
                raise FaultHealError(f"connection hold did not end: {exc}") from exc
        self.held_until = 0.0


@dataclass
class RedisAtMaxmemory:
    """Redis capped at its current use plus ``headroom_mib`` and filled up to that cap.

    The filler keys carry a TTL (like every key the stack writes) so an eviction policy can make
    room; heal deletes them and restores the previous ``maxmemory``.
    """

    redis: "Service"
    headroom_mib: int = 4
    prefix: str = field(default_factory=lambda: f"renderchaos:filler:{secrets.token_hex(3)}:")
    previous: str | None = field(default=None, init=False)
    filled_keys: int = field(default=0, init=False)

    def describe(self) -> str:
        return f"redis maxmemory = used + {self.headroom_mib} MiB, filled"

    def _client(self) -> Any:
        return self.redis.client()  # type: ignore[attr-defined]

    def inject(self) -> None:
        import redis

        try:
            c = self._client()
            self.previous = c.config_get("maxmemory").get("maxmemory", "0")
            used = int(c.info("memory")["used_memory"])
            c.config_set("maxmemory", str(used + self.headroom_mib * 1024 * 1024))
            value = b"x" * 16_384
            for batch in range(10 * self.headroom_mib + 20):  # fill well past the cap
                pipe = c.pipeline(transaction=False)
                for i in range(16):
                    pipe.set(f"{self.prefix}{batch}:{i}", value, ex=600)
                try:
                    pipe.execute()
                    self.filled_keys += 16
                except redis.ResponseError as exc:
                    if "OOM" in str(exc):
                        break  # noeviction: full, writes refused
                    raise
        except redis.RedisError as exc:
            raise FaultInjectionError(f"could not fill redis to maxmemory: {exc}") from exc

    def full(self) -> bool:
        info = self._client().info("memory")
        cap = int(info.get("maxmemory", 0))
        return cap > 0 and int(info["used_memory"]) >= cap - 256 * 1024

    def heal(self) -> None:
        import redis

        if self.previous is None:
            return
        try:
            c = self._client()
            c.config_set("maxmemory", self.previous)
            for key in c.scan_iter(match=self.prefix + "*", count=1000):
                c.delete(key)
        except redis.RedisError as exc:
            raise FaultHealError(f"could not restore redis maxmemory: {exc}") from exc
        self.previous = None


# ---------------------------------------------------------------------------------------
# Backup and restore (R §六.2 数据丢失: pg_dump every 6 h, pg_restore from the latest backup)

def _psql_args(pg: "Postgres", db: str | None = None) -> list[str]:
    return ["-h", pg.ctx.host, "-p", str(pg.port), "-U", pg.user] + (["-d", db] if db else [])


def _run(pg: "Postgres", cmd: list[str], what: str) -> str:
    # the password travels in the environment of the shell, never on a command line that ps shows
    script = f"PGPASSWORD={shlex.quote(pg.password)} exec {shlex.join(cmd)}"
    res = exec_in(pg, ["sh", "-c", script])
    if res.exit_code != 0:
        raise FaultInjectionError(f"{what} exited {res.exit_code}: {res.output.strip()[:800]}", service=pg.name)
    return res.output


def pg_dump(pg: "Postgres", path: str = "/tmp/renderchaos-backup.dump") -> str:
    """Custom-format dump of the stack's database into ``path`` inside the container."""
    _run(pg, ["pg_dump", *_psql_args(pg), "-Fc", "-f", path, pg.database], "pg_dump")
    return path


def drop_database(pg: "Postgres") -> None:
    """The disaster: the database is gone (sessions forced out)."""
    _run(pg, ["psql", *_psql_args(pg, "postgres"), "-v", "ON_ERROR_STOP=1", "-c",
              f'DROP DATABASE "{pg.database}" WITH (FORCE)'], "drop database")


def pg_restore(pg: "Postgres", path: str = "/tmp/renderchaos-backup.dump") -> None:
    """Recreate the database and restore ``path`` into it."""
    _run(pg, ["psql", *_psql_args(pg, "postgres"), "-v", "ON_ERROR_STOP=1", "-c",
              f'CREATE DATABASE "{pg.database}" OWNER "{pg.user}"'], "create database")
    _run(pg, ["pg_restore", *_psql_args(pg, pg.database), "--exit-on-error", "--no-owner", path], "pg_restore")


@dataclass
class DatabaseDropped:
    """The database dropped; healed by restoring the dump (if the scenario has not already)."""

    pg: "Postgres"
    dump_path: str
    dropped: bool = field(default=False, init=False)

    def describe(self) -> str:
        return f"drop database {self.pg.database}"

    def inject(self) -> None:
        drop_database(self.pg)
        self.dropped = True

    def restore(self) -> None:
        pg_restore(self.pg, self.dump_path)
        self.dropped = False

    def heal(self) -> None:
        if not self.dropped:
            return
        with self.pg.connect(dbname="postgres") as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.pg.database,)).fetchone()
        if exists:
            self.dropped = False
            return
        try:
            self.restore()
        except FaultInjectionError as exc:
            raise FaultHealError(f"could not restore the database: {exc}") from exc
