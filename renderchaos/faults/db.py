"""Data-store faults: an exhausted connection pool, a table bulk-filled, Redis at maxmemory, a
dropped database.

Each is a Fault (``describe / inject / heal``, heal idempotent) for ``ScenarioRun.inject``, plus the
backup / restore steps of the R §六.2 drill (pg_dump / pg_restore inside the ``database`` role's
container, with the credentials of the target's ``database_dsn``). What is platform-specific (a
test hook, the platform's schema) comes from the platform's adapter.
"""

from __future__ import annotations

import secrets
import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from renderchaos.errors import FaultHealError, FaultInjectionError, TargetError
from renderchaos.faults.container import exec_in
from renderchaos.wait import Deadline, Poll, wait_for

if TYPE_CHECKING:
    from renderchaos.platforms.base import Platform
    from renderchaos.platforms.refstack.adapter import HeldPool
    from renderchaos.target import ContainerHandle


@dataclass
class HeldConnections:
    """Every pooled connection of one API process checked out for ``seconds`` (A §4.1).

    Through the platform's test hook (``platform.hold_db_connections``; the reference stack's
    acts on the API process that answers, so run it with one API process). The hold cannot
    be cut short: heal waits (bounded) until it has expired.
    """

    platform: "Platform"
    seconds: int = 10
    count: int | None = None  # default: the platform's pool size + overflow
    held_until: float = field(default=0.0, init=False)
    held: "HeldPool | None" = field(default=None, init=False)

    def describe(self) -> str:
        n = self.held.count if self.held else (self.count or "every")
        return f"hold {n} pooled API connections for {self.seconds}s"

    def inject(self) -> None:
        hold = getattr(self.platform, "hold_db_connections", None)
        if hold is None:
            raise FaultInjectionError(f"platform {self.platform.name} has no hold_db_connections test hook "
                                      "(feature 'test_hooks')")
        try:
            self.held = hold(self.seconds, self.count)
        except TargetError as exc:
            raise FaultInjectionError(f"the connection hold was refused: {exc}") from exc
        except httpx.HTTPError as exc:
            raise FaultInjectionError(f"the connection hold got no answer: {exc}") from exc
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
class BulkJobs:
    """``rows`` jobs bulk-inserted into the platform's database (its adapter's ``fill_jobs``:
    the schema is the platform's), then ANALYZEd; heal removes them (``remove_filled_jobs``).
    ``users``: what the adapter reports about the filler (e.g. a user with many jobs)."""

    platform: "Platform"
    dsn: str
    rows: int = 200_000
    filler_users: int = 2_000
    tag: str = field(default_factory=lambda: f"renderchaos filler {secrets.token_hex(4)}")
    users: dict[str, str] = field(default_factory=dict, init=False)
    filled: bool = field(default=False, init=False)

    def describe(self) -> str:
        return f"{self.rows} jobs of {self.filler_users} users bulk-inserted and analyzed ({self.tag})"

    def inject(self) -> None:
        import psycopg

        fill = getattr(self.platform, "fill_jobs", None)
        if fill is None:
            raise FaultInjectionError(f"platform {self.platform.name} cannot bulk-fill its jobs table (no fill_jobs)")
        self.filled = True  # from here on, heal must look for rows to remove
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                self.users = fill(conn, self.tag, self.rows, self.filler_users)
        except psycopg.Error as exc:
            raise FaultInjectionError(f"bulk insert of {self.rows} jobs failed: {exc}") from exc

    def heal(self) -> None:
        import psycopg

        if not self.filled:
            return
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                self.platform.remove_filled_jobs(conn, self.tag)  # type: ignore[attr-defined]
        except psycopg.Error as exc:
            raise FaultHealError(f"could not remove the filler rows ({self.tag}): {exc}") from exc
        self.filled = False


@dataclass
class RedisAtMaxmemory:
    """Redis capped at its current use plus ``headroom_mib`` and filled up to that cap.

    The filler keys carry a TTL (like every key the stack writes) so an eviction policy can make
    room; heal deletes them and restores the previous ``maxmemory``. ``client``: a redis-py
    client of the ``cache`` container.
    """

    client: Any
    headroom_mib: int = 4
    prefix: str = field(default_factory=lambda: f"renderchaos:filler:{secrets.token_hex(3)}:")
    previous: str | None = field(default=None, init=False)
    filled_keys: int = field(default=0, init=False)

    def describe(self) -> str:
        return f"redis maxmemory = used + {self.headroom_mib} MiB, filled"

    def inject(self) -> None:
        import redis

        try:
            c = self.client
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
        info = self.client.info("memory")
        cap = int(info.get("maxmemory", 0))
        return cap > 0 and int(info["used_memory"]) >= cap - 256 * 1024

    def heal(self) -> None:
        import redis

        if self.previous is None:
            return
        try:
            c = self.client
            c.config_set("maxmemory", self.previous)
            for key in c.scan_iter(match=self.prefix + "*", count=1000):
                c.delete(key)
        except redis.RedisError as exc:
            raise FaultHealError(f"could not restore redis maxmemory: {exc}") from exc
        self.previous = None


# ---------------------------------------------------------------------------------------
# Backup and restore (R §六.2 数据丢失: pg_dump every 6 h, pg_restore from the latest backup).
# The tools run inside the database container (its own pg_dump matches its server), reaching
# the server at the DSN's host and port (the reference stack's containers share the host network).

@dataclass(frozen=True)
class PgAccess:
    """The database container and the credentials of the target's DSN."""

    container: "ContainerHandle"
    dsn: str

    @property
    def params(self) -> dict[str, str]:
        from psycopg.conninfo import conninfo_to_dict

        return {k: str(v) for k, v in conninfo_to_dict(self.dsn).items() if v is not None}

    @property
    def database(self) -> str:
        return self.params["dbname"]

    def args(self, db: str | None = None) -> list[str]:
        p = self.params
        return (["-h", p.get("host", "127.0.0.1"), "-p", p.get("port", "5432"), "-U", p["user"]]
                + (["-d", db] if db else []))

    def connect(self, dbname: str | None = None) -> Any:
        import psycopg

        return psycopg.connect(self.dsn, autocommit=True, **({"dbname": dbname} if dbname else {}))


def _run(pg: PgAccess, cmd: list[str], what: str) -> str:
    # the password travels in the environment of the shell, never on a command line that ps shows
    script = f"PGPASSWORD={shlex.quote(pg.params.get('password', ''))} exec {shlex.join(cmd)}"
    res = exec_in(pg.container, ["sh", "-c", script])  # type: ignore[arg-type]
    if res.exit_code != 0:
        raise FaultInjectionError(f"{what} exited {res.exit_code}: {res.output.strip()[:800]}",
                                  service=pg.container.name)
    return res.output


def pg_dump(pg: PgAccess, path: str = "/tmp/renderchaos-backup.dump") -> str:
    """Custom-format dump of the target's database into ``path`` inside the container."""
    _run(pg, ["pg_dump", *pg.args(), "-Fc", "-f", path, pg.database], "pg_dump")
    return path


def drop_database(pg: PgAccess) -> None:
    """The disaster: the database is gone (sessions forced out)."""
    _run(pg, ["psql", *pg.args("postgres"), "-v", "ON_ERROR_STOP=1", "-c",
              f'DROP DATABASE "{pg.database}" WITH (FORCE)'], "drop database")


def pg_restore(pg: PgAccess, path: str = "/tmp/renderchaos-backup.dump") -> None:
    """Recreate the database and restore ``path`` into it."""
    _run(pg, ["psql", *pg.args("postgres"), "-v", "ON_ERROR_STOP=1", "-c",
              f'CREATE DATABASE "{pg.database}" OWNER "{pg.params["user"]}"'], "create database")
    _run(pg, ["pg_restore", *pg.args(pg.database), "--exit-on-error", "--no-owner", path], "pg_restore")


@dataclass
class DatabaseDropped:
    """The database dropped; healed by restoring the dump (if the scenario has not already)."""

    pg: PgAccess
    dump_path: str
    dropped: bool = field(default=False, init=False)

    def describe(self) -> str:
        return f"drop database {self.pg.database}"

    def inject(self) -> None:
        drop_database(self.pg)
        self.dropped = True

    def exists(self) -> bool:
        with self.pg.connect("postgres") as conn:
            return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                (self.pg.database,)).fetchone() is not None

    def restore(self) -> None:
        pg_restore(self.pg, self.dump_path)
        self.dropped = False

    def heal(self) -> None:
        if not self.dropped:
            return
        if self.exists():
            self.dropped = False
            return
        try:
            self.restore()
        except FaultInjectionError as exc:
            raise FaultHealError(f"could not restore the database: {exc}") from exc
