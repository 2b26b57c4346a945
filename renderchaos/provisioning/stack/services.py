"""One class per service: container + readiness check with a deadline + client getter.

All containers run on the engine host's network and bind ``ctx.host`` (127.0.0.1 for an
engine on this machine; the engine host's address for a tcp:// or ssh:// engine) on their own
free port (no bridge network, which would put them on 10.88.x).
Readiness checks are objects: what they wait for, how to poll, which errors
mean "not yet". A container that exits while we wait fails at once, with its
log tail in the error.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import httpx
from testcontainers.core.container import DockerContainer

from renderchaos.errors import ProvisioningError, ReadinessTimeout
from renderchaos.provisioning.stack.context import LABEL_SERVICE, StackContext
from renderchaos.wait import Deadline, Poll, wait_for

CODE_ROOT = Path(__file__).resolve().parents[3]  # where refstack/ and renderchaos_proxy/ live
APP_CODE_MOUNT = "/opt/renderchaos"
APP_USER = "1000:1000"  # unprivileged, so file permissions (mode 000) mean what they say


@dataclass(frozen=True)
class Readiness:
    """A readiness check: ``check()`` returns truthy when ready."""

    what: str
    check: Callable[[], Any]
    poll: Poll = Poll(interval=0.1)


class Service:
    """Base: a container of the stack."""

    name: str = ""
    image_key: str = ""

    def __init__(self, ctx: StackContext, image: str) -> None:
        self.ctx = ctx
        self.image = image
        self.port = ctx.port()
        self.env: dict[str, str] = {}
        self._tc: DockerContainer | None = None

    # -- definition ------------------------------------------------------------------------
    def command(self) -> list[str] | None:
        return None

    def container_kwargs(self) -> dict[str, Any]:
        return {}

    def mounts_spec(self) -> dict[str, dict[str, str]]:
        """Host path or named volume -> {"bind": container path, "mode": "ro"|"rw"}."""
        return {}

    def readiness(self) -> Readiness:
        raise NotImplementedError

    @property
    def container_name(self) -> str:
        return self.ctx.name(self.name)

    def build(self) -> DockerContainer:
        tc = DockerContainer(self.image, docker_client_kw=self.ctx.engine.client_kwargs())
        tc.with_name(self.container_name)
        if self.command():
            tc.with_command(self.command())
        for key, value in self.env.items():
            tc.with_env(key, value)
        for source, mount in self.mounts_spec().items():
            tc.with_volume_mapping(source, mount["bind"], mount["mode"])
        kwargs = {"network_mode": "host",
                  "labels": {**self.ctx.labels, LABEL_SERVICE: self.name}}
        kwargs.update(self.container_kwargs())
        tc.with_kwargs(**kwargs)
        return tc

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Create and start the container; does not wait for readiness."""
        self._tc = self.build()
        try:
            self._tc.start()
        except Exception as exc:
            hint = "Is the image present (python -m renderchaos.provisioning.engine build) and the engine up?"
            if not self.ctx.engine.local and self.mounts_spec():
                hint += (f" The engine at {self.ctx.engine.docker_host} is not on this machine: it must see "
                         f"{CODE_ROOT} and {self.ctx.tmp_root} at the same paths (bind mounts).")
            raise ProvisioningError(f"could not start {self.name} ({self.image}): {exc}. {hint}",
                                    service=self.name) from exc

    def wait_ready(self, deadline: Deadline) -> None:
        check = self.readiness()

        def probe() -> Any:
            state = self.state()
            if state.get("Status") in ("exited", "dead") or state.get("Running") is False:
                raise _Exited(f"container exited with code {state.get('ExitCode')}")
            return check.check()

        try:
            wait_for(probe, what=f"{self.name} to be ready ({check.what})", timeout=deadline,
                     poll=Poll(check.poll.interval, tolerate=(OSError, httpx.HTTPError, _NotReady,
                                                               *check.poll.tolerate)),
                     error=ReadinessTimeout, service=self.name)
        except _Exited as exc:
            raise ProvisioningError(f"{self.name} exited while starting: {exc}; last log lines:\n"
                                    f"{self.logs()}", service=self.name) from exc
        except ReadinessTimeout as exc:
            exc.logs = self.logs()
            exc.message += f"\nlast log lines of {self.container_name}:\n{exc.logs}"
            raise

    def remove(self) -> None:
        if self._tc is not None and self._tc._container is not None:
            try:
                self._tc._container.remove(force=True, v=True)
            except Exception:  # noqa: BLE001 - already gone; the reaper sweeps by label anyway
                pass

    # -- inspection ------------------------------------------------------------------------
    @property
    def container(self) -> Any:
        if self._tc is None or self._tc._container is None:
            raise ProvisioningError(f"{self.name} has not been started")
        return self._tc._container

    def state(self) -> dict[str, Any]:
        c = self.container
        c.reload()
        return c.attrs.get("State", {})

    def logs(self, tail: int = 40) -> str:
        try:
            return self.container.logs(tail=tail).decode(errors="replace")
        except Exception as exc:  # noqa: BLE001
            return f"(logs unavailable: {exc})"

    def logs_since_start(self, tail: int = 500) -> str:
        """The log of the container's current run only: after a restart (a container fault),
        the previous run's "ready" line must not make a readiness check pass at once."""
        started = started_epoch(self.state().get("StartedAt"))
        return self.container.logs(tail=tail, since=started).decode(errors="replace")


class _Exited(BaseException):
    """The container exited while we waited: never one of the errors a readiness poll tolerates
    (a BaseException, so ``tolerate=(Exception,)`` cannot swallow it and wait out the deadline)."""


class _NotReady(Exception):
    pass


def started_epoch(started_at: str | None) -> float | None:
    """Docker's and Podman's ``State.StartedAt`` (RFC 3339, nanoseconds) as epoch seconds."""
    import re
    from datetime import datetime

    if not started_at:
        return None
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)?", started_at)
    if not m:
        return None
    base, frac, zone = m.group(1), (m.group(2) or "0")[:6], m.group(3) or "Z"
    ts = datetime.fromisoformat(f"{base}.{frac.ljust(6, '0')}{'+00:00' if zone == 'Z' else zone}")
    if ts.year < 2000:  # never started: "0001-01-01T00:00:00Z"
        return None
    return ts.timestamp()


def _tcp_open(port: int, host: str, timeout: float = 0.5) -> bool:
    with socket.create_connection((host, port), timeout=timeout):
        return True


def _http_ok(url: str, timeout: float = 1.0) -> bool:
    r = httpx.get(url, timeout=timeout)
    if r.status_code != 200:
        raise _NotReady(f"{url} answered {r.status_code}: {r.text[:200]}")
    return True


# ---------------------------------------------------------------------------------------
class Postgres(Service):
    name = "postgres"
    image_key = "postgres"
    user = "renderchaos"
    password = "renderchaos"
    database = "renderchaos"

    def __init__(self, ctx: StackContext, image: str) -> None:
        super().__init__(ctx, image)
        self.env = {"POSTGRES_USER": self.user, "POSTGRES_PASSWORD": self.password,
                    "POSTGRES_DB": self.database}

    def command(self) -> list[str]:
        # fsync=off trades durability across *machine* crashes for speed: a committed row is
        # in the page cache, which survives SIGKILL and container restarts, the faults we
        # inject. synchronous_commit stays on: off loses commits acknowledged just before a
        # SIGKILL (measured), which would hide or fake "accepted job lost" results.
        return ["postgres", "-c", f"port={self.port}", "-c", f"listen_addresses={self.ctx.host}",
                "-c", "fsync=off", "-c", "full_page_writes=off",
                "-c", "max_connections=200"]

    def dsn(self, port: int | None = None) -> str:
        return (f"postgresql://{self.user}:{self.password}@{self.ctx.host}:{port or self.port}/"
                f"{self.database}?connect_timeout=3")

    def connect(self, **kwargs: Any) -> Any:
        import psycopg

        return psycopg.connect(self.dsn(), autocommit=True, **kwargs)

    def readiness(self) -> Readiness:
        import psycopg

        def check() -> bool:
            with self.connect() as conn:
                return conn.execute("select 1").fetchone() == (1,)

        return Readiness(f"SELECT 1 on {self.ctx.host}:{self.port}", check,
                         Poll(0.1, tolerate=(psycopg.OperationalError,)))


class Redis(Service):
    name = "redis"
    image_key = "redis"

    def command(self) -> list[str]:
        return ["redis-server", "--port", str(self.port), "--bind", self.ctx.host,
                "--save", "", "--appendonly", "no", "--protected-mode", "no"]

    def url(self, port: int | None = None) -> str:
        return f"redis://{self.ctx.host}:{port or self.port}/0"

    def client(self) -> Any:
        return redis_client(self.ctx.host, self.port)

    def readiness(self) -> Readiness:
        import redis

        return Readiness(f"PING on {self.ctx.host}:{self.port}", lambda: self.client().ping(),
                         Poll(0.05, tolerate=(redis.RedisError,)))


class RabbitMQ(Service):
    name = "rabbitmq"
    image_key = "rabbitmq"

    def __init__(self, ctx: StackContext, image: str) -> None:
        super().__init__(ctx, image)
        self.dist_port, self.epmd_port = ctx.port(), ctx.port()
        self.env = {
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_NODE_IP_ADDRESS": ctx.host,
            "ERL_EPMD_ADDRESS": ctx.host,
            "RABBITMQ_NODENAME": f"rc{ctx.stack_id.replace('-', '')}@localhost",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS":
                f"-kernel inet_dist_use_interface {{{ctx.host.replace('.', ',')}}}",
        }

    def url(self, port: int | None = None) -> str:
        return f"amqp://guest:guest@{self.ctx.host}:{port or self.port}//"

    def readiness(self) -> Readiness:
        return Readiness(f"AMQP handshake on {self.ctx.host}:{self.port}",
                         lambda: amqp_handshake(self.port, self.ctx.host), Poll(0.1))


def redis_client(host: str, port: int) -> Any:
    """A direct Redis client of the harness (never through the fault proxy)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # Bounded timeouts and no hidden retries: a paused Redis made redis-py block 25 s
    # with its defaults.
    return redis.Redis(host=host, port=port, socket_timeout=2, socket_connect_timeout=2, retry=Retry(NoBackoff(), 0))


def amqp_handshake(port: int, host: str = "127.0.0.1", timeout: float = 1.0) -> bool:
    """True when an AMQP 0-9-1 broker answers the protocol header with Connection.Start."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(b"AMQP\x00\x00\x09\x01")
        head = s.recv(7)
        if len(head) < 7 or head[0] != 1:
            raise _NotReady(f"unexpected AMQP answer {head!r}")
        return True


# ---------------------------------------------------------------------------------------
class AppService(Service):
    """A process of the reference stack or the fault proxy, run from the app image."""

    image_key = "app"
    module = ""
    mounts: tuple[str, ...] = ("refstack",)

    def __init__(self, ctx: StackContext, image: str, env: dict[str, str] | None = None,
                 volumes: dict[str, dict[str, str]] | None = None, mem_limit: str | None = None) -> None:
        super().__init__(ctx, image)
        self.env = dict(env or {})
        self.volumes = dict(volumes or {})
        self.mem_limit = mem_limit

    def command(self) -> list[str]:
        return ["python", "-m", self.module]

    def mounts_spec(self) -> dict[str, dict[str, str]]:
        volumes = {str(CODE_ROOT / pkg): {"bind": f"{APP_CODE_MOUNT}/{pkg}", "mode": "ro"}
                   for pkg in self.mounts}
        volumes.update(self.volumes)
        return volumes

    def container_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"user": APP_USER, "init": True}
        if self.mem_limit:
            kwargs["mem_limit"] = self.mem_limit
            kwargs["memswap_limit"] = self.mem_limit  # no swap: the limit is a real OOM line
        return kwargs

    def base_url(self) -> str:
        return f"http://{self.ctx.host}:{self.port}"


class StorageHost(AppService):
    """Holds the shared output volume for the stack's lifetime, like the file server or object
    store of a real deployment. A tmpfs volume is unmounted (and emptied) when its last container
    stops; without a holder, stopping the API and every worker (data.restore, R §六.2) would
    silently delete every rendered video."""

    name = "storage"
    mounts = ()

    def command(self) -> list[str]:
        return ["sleep", "infinity"]

    def readiness(self) -> Readiness:
        return Readiness("storage host running", lambda: self.state().get("Running"), Poll(0.05))


class FaultProxy(AppService):
    """The Toxiproxy-compatible server of this project (renderchaos_proxy)."""

    name = "faultproxy"
    module = "renderchaos_proxy.server"
    mounts = ("renderchaos_proxy",)

    def command(self) -> list[str]:
        return ["python", "-m", self.module, "-host", self.ctx.host, "-port", str(self.port)]

    def readiness(self) -> Readiness:
        return Readiness(f"GET /version on {self.base_url()}",
                         lambda: _http_ok(f"{self.base_url()}/version"))


class OfficialToxiproxy(Service):
    """Shopify's Toxiproxy image, used instead of ours wherever it can be pulled."""

    name = "faultproxy"
    image_key = "toxiproxy"

    def command(self) -> list[str]:
        return ["-host", self.ctx.host, "-port", str(self.port)]

    def base_url(self) -> str:
        return f"http://{self.ctx.host}:{self.port}"

    def readiness(self) -> Readiness:
        return Readiness(f"GET /version on {self.base_url()}", lambda: _http_ok(f"{self.base_url()}/version"))


class Api(AppService):
    name = "api"
    module = "refstack.api"

    def readiness(self) -> Readiness:
        return Readiness(f"GET /health 200 on {self.base_url()}",
                         lambda: _http_ok(f"{self.base_url()}/health", timeout=3), Poll(0.2))


class Worker(AppService):
    module = "refstack.worker"

    def __init__(self, ctx: StackContext, image: str, index: int, **kw: Any) -> None:
        self.index = index
        self.name = f"worker-{index}"
        super().__init__(ctx, image, **kw)
        self.env.setdefault("WORKER_NAME", f"{self.name}@{ctx.stack_id}")

    def readiness(self) -> Readiness:
        # Celery prints "<hostname> ready." once it consumes from the broker.
        def check() -> bool:
            return " ready." in self.logs_since_start(tail=200)

        return Readiness("celery to log 'ready.'", check, Poll(0.2))


class Provider(AppService):
    name = "provider"
    module = "refstack.provider"

    def readiness(self) -> Readiness:
        return Readiness(f"GET /_control/stats on {self.base_url()}",
                         lambda: _http_ok(f"{self.base_url()}/_control/stats"))


class Live(AppService):
    name = "live"
    module = "refstack.live"

    def readiness(self) -> Readiness:
        return Readiness(f"GET /health on {self.base_url()}", lambda: _http_ok(f"{self.base_url()}/health"))
