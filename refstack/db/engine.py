"""Engines, transactions with deadlock retry, and the map from driver errors to meanings.

    DatabaseError                     (root of what callers catch)
    ├── DatabaseUnavailable           cannot connect / connection lost      -> 503
    ├── PoolExhausted                 no pooled connection within timeout   -> 503 (A §4.1)
    ├── DatabaseTimeout               statement_timeout / lock_timeout hit  -> 503
    └── TransactionConflict           deadlock or serialization failure
                                      still failing after the retries       -> 409 (A §4.2)
"""

from __future__ import annotations

import logging
import random
import time
from typing import Callable, TypeVar

import sqlalchemy.exc as sa_exc
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from refstack.broken import is_broken
from refstack.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

# SQLSTATEs
DEADLOCK = "40P01"
SERIALIZATION = "40001"
QUERY_CANCELED = "57014"  # statement_timeout
LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout
RETRYABLE = (DEADLOCK, SERIALIZATION)


class DatabaseError(Exception):
    code = "database_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DatabaseUnavailable(DatabaseError):
    code = "database_unavailable"


class PoolExhausted(DatabaseError):
    code = "database_unavailable"


class DatabaseTimeout(DatabaseError):
    code = "database_timeout"


class TransactionConflict(DatabaseError):
    code = "conflict"


def make_engine(settings: Settings, *, application_name: str = "refstack") -> Engine:
    """The pooled engine of one process (A §4.1: pool size / overflow / timeout from config)."""
    options = [f"-c statement_timeout={settings.db_statement_timeout_ms}",
               "-c lock_timeout=%d" % max(1000, settings.db_statement_timeout_ms),
               # a leaked transaction cannot sit `idle in transaction` for long (A §4.2 step 3)
               "-c idle_in_transaction_session_timeout=%d" % max(5000, 2 * settings.db_statement_timeout_ms)]
    return create_engine(
        settings.sqlalchemy_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=300.0 if is_broken("api_no_pool_timeout") else settings.db_pool_timeout,
        pool_pre_ping=not is_broken("api_no_pool_preping"),  # R §四.2: survive a DB restart
        pool_recycle=1800,
        connect_args={
            "connect_timeout": settings.db_connect_timeout,
            "options": " ".join(options),
            "application_name": application_name,
            # TCP keepalives: a partitioned peer is noticed rather than waited on forever
            "keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 2,
        },
    )


def make_probe_engine(settings: Settings) -> Engine:
    """Unpooled engine for /health: answers even when the main pool is exhausted."""
    return create_engine(
        settings.sqlalchemy_url, poolclass=NullPool,
        connect_args={"connect_timeout": 1, "options": "-c statement_timeout=1000",
                      "application_name": "refstack-health"},
    )


def sqlstate(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", None)
    return getattr(orig, "sqlstate", None) or getattr(exc, "sqlstate", None)


def classify(exc: BaseException) -> DatabaseError | None:
    """Map a SQLAlchemy/psycopg error to a :class:`DatabaseError`, or None if it is a bug."""
    if isinstance(exc, DatabaseError):
        return exc
    if isinstance(exc, sa_exc.TimeoutError):  # QueuePool limit reached
        detail = str(exc).split(" (Background on this error", 1)[0]
        return PoolExhausted(f"database connection pool exhausted: no connection within DB_POOL_TIMEOUT ({detail})")
    state = sqlstate(exc)
    if state in RETRYABLE:
        return TransactionConflict("the request conflicted with a concurrent one (deadlock); retry it")
    if state in (QUERY_CANCELED, LOCK_NOT_AVAILABLE):
        return DatabaseTimeout("the database did not answer within the statement timeout")
    if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError)) or getattr(
            exc, "connection_invalidated", False):
        return DatabaseUnavailable("the database is unreachable")
    if isinstance(exc, sa_exc.DBAPIError) and state and state[:2] in ("08", "57", "53"):
        # connection exception, operator intervention (shutdown), insufficient resources
        return DatabaseUnavailable("the database is unreachable")
    return None


def run_transaction(engine: Engine, fn: Callable[[Connection], T], *, retries: int = 4) -> T:
    """Run ``fn`` in one transaction; retry it on deadlock / serialization failure (A §4.2).

    ``fn`` must be safe to run again (it starts from scratch in a new transaction).
    Anything that classifies as a :class:`DatabaseError` is raised as one.
    """
    if is_broken("api_no_deadlock_retry"):
        retries = 0
    attempt = 0
    while True:
        try:
            with engine.begin() as conn:
                return fn(conn)
        except sa_exc.DBAPIError as exc:
            state = sqlstate(exc)
            if state in RETRYABLE and is_broken("api_no_deadlock_retry"):
                raise  # planted bug: surfaces as a 500
            if state in RETRYABLE and attempt < retries:
                attempt += 1
                delay = min(0.5, 0.02 * (2 ** attempt)) * (0.5 + random.random())
                log.warning("transaction %s (sqlstate %s); retry %d/%d in %.3fs",
                            "deadlocked" if state == DEADLOCK else "serialization failure",
                            state, attempt, retries, delay)
                time.sleep(delay)  # backoff between retries, not a readiness wait
                continue
            mapped = classify(exc)
            if mapped is None:
                raise
            raise mapped from exc
        except sa_exc.SQLAlchemyError as exc:
            mapped = classify(exc)
            if mapped is None:
                raise
            raise mapped from exc


def wait_for_database(engine: Engine, timeout: float) -> None:
    """Start-up only: poll until Postgres accepts a connection or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            return
        except sa_exc.SQLAlchemyError as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise DatabaseUnavailable(
                f"Postgres not reachable within {timeout:.0f}s (DB_STARTUP_TIMEOUT); last error: {last}")
        time.sleep(0.5)  # poll interval
