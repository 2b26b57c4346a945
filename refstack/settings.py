"""Configuration of the reference stack, read once from the environment.

Every service (API, worker) builds one :class:`Settings` with
:meth:`Settings.from_env`. A bad value fails at start with a message that
names the variable, the value seen and what is expected; nothing is read from
the environment anywhere else (except ``REFSTACK_BROKEN``, see
:mod:`refstack.broken`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Callable, Mapping


class SettingsError(ValueError):
    """An environment variable has a value the stack cannot run with."""

    def __init__(self, message: str, variable: str = "", value: str = "") -> None:
        super().__init__(message)
        self.variable = variable
        self.value = value

    def __reduce__(self):  # survive pickling with the fields
        return (type(self), (str(self), self.variable, self.value))


def _bad(var: str, raw: str, expected: str) -> SettingsError:
    return SettingsError(f"{var}={raw!r} is invalid: expected {expected}", var, raw)


def _int(lo: int | None = None, hi: int | None = None) -> Callable[[str, str], int]:
    def parse(var: str, raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise _bad(var, raw, "an integer") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise _bad(var, raw, f"an integer in [{lo}, {hi if hi is not None else 'inf'}]")
        return value

    return parse


def _float(lo: float | None = None, hi: float | None = None) -> Callable[[str, str], float]:
    def parse(var: str, raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise _bad(var, raw, "a number (seconds)") from None
        if value != value or (lo is not None and value < lo) or (hi is not None and value > hi):
            raise _bad(var, raw, f"a number in [{lo}, {hi if hi is not None else 'inf'}]")
        return value

    return parse


def _str(var: str, raw: str) -> str:
    return raw.strip()


def _choice(*options: str) -> Callable[[str, str], str]:
    def parse(var: str, raw: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            raise _bad(var, raw, f"one of {', '.join(options)}")
        return value

    return parse


def _csv(var: str, raw: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in raw.split(",") if p.strip())


def _bool(var: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise _bad(var, raw, "a boolean (1/0, true/false)")


def _url(*schemes: str) -> Callable[[str, str], str]:
    def parse(var: str, raw: str) -> str:
        value = raw.strip()
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in schemes:
            raise _bad(var, raw, f"a URL with scheme {' or '.join(s + '://' for s in schemes)}")
        return value

    return parse


def _setting(env: str, default: object, parse: Callable[[str, str], object], doc: str):
    return field(default=default, metadata={"env": env, "parse": parse, "doc": doc})


@dataclass(frozen=True)
class Settings:
    """All knobs of the reference stack. ``Settings.describe()`` lists them."""

    # --- dependencies ---
    database_url: str = _setting(
        "DATABASE_URL", "postgresql+psycopg://refstack:refstack@127.0.0.1:5432/refstack",
        _url("postgresql", "postgresql+psycopg", "postgres"), "Postgres URL (psycopg 3 driver is forced)")
    redis_url: str = _setting("REDIS_URL", "redis://127.0.0.1:6379/0", _url("redis", "rediss", "unix"),
                              "Redis: rate limits, leak-task observations")
    broker_url: str = _setting("BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//",
                               _url("amqp", "amqps", "pyamqp", "memory"), "RabbitMQ for Celery")
    # --- API ---
    admin_token: str = _setting("ADMIN_TOKEN", "", _str, "bearer token of the admin API; empty disables it")
    api_host: str = _setting("API_HOST", "127.0.0.1", _str, "bind address")
    api_port: int = _setting("API_PORT", 8000, _int(1, 65535), "bind port")
    web_concurrency: int = _setting("WEB_CONCURRENCY", 2, _int(1, 64), "gunicorn worker processes")
    max_body_bytes: int = _setting("MAX_BODY_BYTES", 65536, _int(256), "larger request bodies get 400")
    token_ttl_seconds: int = _setting("TOKEN_TTL_SECONDS", 3600, _int(1), "AI API login token lifetime")
    render_cost: int = _setting("RENDER_COST", 10, _int(0), "credits charged per render job")
    ai_cost: int = _setting("AI_COST", 5, _int(0), "credits charged per AI job")
    publish_timeout: float = _setting("PUBLISH_TIMEOUT", 3.0, _float(0.1, 60),
                                      "bound on publishing one job to the broker (connect + confirm)")
    remux_max_concurrent: int = _setting("REMUX_MAX_CONCURRENT", 4, _int(1, 1000),
                                         "concurrent download remuxes per API process; more get 503")
    # --- rate limiting (R §二.2, R §六.3) ---
    rate_limit_key_rate: float = _setting("RATE_LIMIT_KEY_RATE", 5.0, _float(0),
                                          "per API key / user, requests per second (0 disables)")
    rate_limit_key_burst: int = _setting("RATE_LIMIT_KEY_BURST", 10, _int(1), "per key burst")
    redis_maxmemory_policy: str = _setting(
        "REDIS_MAXMEMORY_POLICY", "allkeys-lru",
        _choice("", "allkeys-lru", "volatile-lru", "allkeys-lfu", "volatile-lfu", "volatile-ttl"),
        "eviction policy the API asserts on Redis (CONFIG SET) at start and after reconnecting; "
        "empty = leave Redis as configured (R §四.3: maxmemory-policy allkeys-lru)")
    rate_limit_ip_rate: float = _setting("RATE_LIMIT_IP_RATE", 10.0, _float(0),
                                         "per client IP flood limit, r/s (R: limit_req 10r/s; 0 disables)")
    rate_limit_ip_burst: int = _setting("RATE_LIMIT_IP_BURST", 20, _int(1), "per client IP burst (R: 20)")
    rate_limit_ip_exempt: tuple[str, ...] = _setting("RATE_LIMIT_IP_EXEMPT", (), _csv,
                                                     "client IPs never flood-limited (comma-separated)")
    rate_limit_fail_mode: str = _setting(
        "RATE_LIMIT_FAIL_MODE", "open", _choice("open", "closed"),
        "Redis unreachable: open = serve without per-key limits (the per-IP limit falls back to an "
        "in-process bucket); closed = 503 rate_limiter_unavailable on limited endpoints")
    # --- storage ---
    storage_dir: str = _setting("STORAGE_DIR", "/tmp/refstack/storage", _str, "render outputs")
    assets_dir: str = _setting("ASSETS_DIR", "/tmp/refstack/assets", _str, "render inputs")
    # --- database pool (A §4.1) ---
    db_pool_size: int = _setting("DB_POOL_SIZE", 5, _int(1, 500), "SQLAlchemy pool size per process")
    db_max_overflow: int = _setting("DB_MAX_OVERFLOW", 10, _int(0, 500), "pool overflow")
    db_pool_timeout: float = _setting("DB_POOL_TIMEOUT", 3.0, _float(0.1, 600),
                                      "seconds to wait for a pooled connection before 503")
    db_statement_timeout_ms: int = _setting("DB_STATEMENT_TIMEOUT_MS", 5000, _int(0),
                                            "server-side statement_timeout (0 = none)")
    db_connect_timeout: int = _setting("DB_CONNECT_TIMEOUT", 3, _int(1, 120), "libpq connect_timeout, s")
    db_startup_timeout: float = _setting("DB_STARTUP_TIMEOUT", 60.0, _float(0),
                                         "how long start-up waits for Postgres before giving up")
    db_deadlock_retries: int = _setting("DB_DEADLOCK_RETRIES", 4, _int(0, 20),
                                        "transparent retries of a deadlocked/serialization-failed transaction")
    # --- AI provider (A §3) ---
    provider_url: str = _setting("PROVIDER_URL", "http://127.0.0.1:8100", _url("http", "https"), "fake AI provider")
    provider_keys: tuple[str, ...] = _setting("PROVIDER_KEYS", (), _csv, "provider API keys, rotated on 429")
    ai_task_timeout: float = _setting("AI_TASK_TIMEOUT", 60.0, _float(0.1), "AI job deadline, s (A §2.3)")
    # --- render (R §一) ---
    render_encoder: str = _setting("RENDER_ENCODER", "libx264", _str, "preferred video encoder (falls back to libx264)")
    render_time_limit: float = _setting("RENDER_TIME_LIMIT", 600.0, _float(1), "render deadline, s (R §一.3)")
    render_stall_timeout: float = _setting("RENDER_STALL_TIMEOUT", 30.0, _float(1), "no-progress watchdog, s")
    render_segment_seconds: float = _setting("RENDER_SEGMENT_SECONDS", 300.0, _float(1), "segment length (R §一.2)")
    render_max_attempts: int = _setting("RENDER_MAX_ATTEMPTS", 3, _int(1, 20),
                                        "deliveries of one job before it fails resource_exhausted")
    # --- worker ---
    worker_name: str = _setting("WORKER_NAME", "", _str, "Celery hostname (default refstack@<host>)")
    worker_concurrency: int = _setting("WORKER_CONCURRENCY", 2, _int(1, 256), "prefork children")
    worker_max_tasks_per_child: int = _setting("WORKER_MAX_TASKS_PER_CHILD", 50, _int(1),
                                               "recycle a child after N tasks (A §5.2)")
    worker_queues: tuple[str, ...] = _setting("WORKER_QUEUES", ("render", "ai", "maintenance"), _csv,
                                              "queues this worker consumes")
    # --- mutation testing ---
    refstack_broken: tuple[str, ...] = _setting("REFSTACK_BROKEN", (), _csv, "see refstack/broken.py")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(f.metadata["env"])
            if raw is None:
                continue
            values[f.name] = f.metadata["parse"](f.metadata["env"], raw)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.rate_limit_ip_rate > 0 and self.rate_limit_ip_burst < 1:
            raise SettingsError("RATE_LIMIT_IP_BURST must be >= 1 when RATE_LIMIT_IP_RATE > 0",
                                "RATE_LIMIT_IP_BURST", str(self.rate_limit_ip_burst))
        for q in self.worker_queues:
            if q not in ("render", "ai", "maintenance"):
                raise _bad("WORKER_QUEUES", ",".join(self.worker_queues), "a subset of render,ai,maintenance")
        if not self.worker_queues:
            raise _bad("WORKER_QUEUES", "", "at least one queue")
        from refstack import broken

        for name in self.refstack_broken:
            if name not in broken.VARIANTS:
                raise SettingsError(f"REFSTACK_BROKEN names unknown variant {name!r}; known: "
                                    f"{sorted(broken.VARIANTS)}", "REFSTACK_BROKEN", name)

    @property
    def sqlalchemy_url(self) -> str:
        """DATABASE_URL with the psycopg 3 driver, whatever spelling was given."""
        scheme, rest = self.database_url.split("://", 1)
        return f"postgresql+psycopg://{rest}"

    @classmethod
    def describe(cls) -> list[tuple[str, str, str]]:
        """(variable, default, meaning) for every setting, for the README."""
        out = []
        for f in fields(cls):
            default = f.default
            if isinstance(default, tuple):
                default = ",".join(default)
            out.append((f.metadata["env"], str(default), f.metadata["doc"]))
        return out
