"""A whole reference stack: data stores, fault proxy, API, workers, AI provider, live recorder.

Start order (one shared deadline, everything that can overlap does):
1. Postgres, Redis, RabbitMQ, the fault proxy and the AI provider start together.
2. As soon as the proxy answers, one ``/populate`` call creates a route per dependency;
   the API and workers reach Postgres, Redis, RabbitMQ and the provider only through
   those routes, so network faults apply to them. The harness's own probes connect
   directly and are never faulted.
3. API, workers and the live recorder start (workers retry the broker until it is up).
4. Wait for everything to be ready.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from renderchaos.errors import ProvisioningError
from renderchaos.provisioning.stack.context import StackContext
from renderchaos.provisioning.stack.services import (
    Api, FaultProxy, Live, OfficialToxiproxy, StorageHost, Postgres, Provider, RabbitMQ, Redis, Service, Worker,
)
from renderchaos.wait import Deadline

log = logging.getLogger(__name__)

#: dependency roles reached through a fault-proxy route (role -> the service behind it)
PROXIED = {"database": "postgres", "cache": "redis", "broker": "rabbitmq", "provider": "provider"}


@dataclass
class StackConfig:
    images: dict[str, str]  # service image key -> image reference
    workers: int = 2
    worker_concurrency: int = 1
    broken: tuple[str, ...] = ()  # refstack.broken variants to switch on
    env: dict[str, str] = field(default_factory=dict)  # extra env for every app service
    storage_mib: int = 512  # size of the shared output volume (tmpfs): "disk full" is real ENOSPC
    worker_mem_limit: str | None = None
    with_provider: bool = True
    with_live: bool = True
    toxiproxy_url: str | None = None  # an external (real) Toxiproxy on this host, instead of a container
    start_timeout: float = 90.0
    provider_keys: tuple[str, ...] = ("pk-alpha", "pk-bravo", "pk-charlie")
    render_encoder: str = "h264_nvenc"  # as configured on a GPU fleet; absent here -> fallback


@dataclass
class Route:
    """A fault-proxy route in front of one dependency."""

    name: str
    listen_port: int
    upstream_port: int


class Stack:
    def __init__(self, ctx: StackContext, config: StackConfig) -> None:
        self.ctx = ctx
        self.config = config
        self.admin_token = secrets.token_urlsafe(16)
        img = config.images
        self.postgres = Postgres(ctx, img["postgres"])
        self.redis = Redis(ctx, img["redis"])
        self.rabbitmq = RabbitMQ(ctx, img["rabbitmq"])
        self.proxy: FaultProxy | OfficialToxiproxy | None = None
        if not config.toxiproxy_url:
            self.proxy = (OfficialToxiproxy(ctx, img["toxiproxy"]) if img.get("toxiproxy")
                          else FaultProxy(ctx, img["app"]))
        self.proxy_url = config.toxiproxy_url or self.proxy.base_url()  # type: ignore[union-attr]
        self.provider = Provider(ctx, img["app"], env={"PROVIDER_HOST": ctx.host}) \
            if config.with_provider else None
        if self.provider:
            self.provider.env.update(PROVIDER_PORT=str(self.provider.port),
                                     PROVIDER_VALID_KEYS=",".join(config.provider_keys))
        self.routes: dict[str, Route] = {}  # role -> route
        upstreams = {"database": self.postgres.port, "cache": self.redis.port, "broker": self.rabbitmq.port}
        if self.provider:
            upstreams["provider"] = self.provider.port
        for name, port in upstreams.items():
            self.routes[name] = Route(f"{ctx.stack_id}-{name}", ctx.port(), port)
        self.assets_dir = ctx.host_dir("assets")
        self.live_data_dir = ctx.host_dir("live")
        self.storage_volume = f"rc-{ctx.stack_id}-storage"
        app_env = self._app_env()
        volumes = {self.storage_volume: {"bind": "/data/storage", "mode": "rw"},
                   str(self.assets_dir): {"bind": "/data/assets", "mode": "rw"}}
        self.storage = StorageHost(ctx, img["app"], volumes={self.storage_volume: volumes[self.storage_volume]})
        self.api = Api(ctx, img["app"], env=app_env, volumes=volumes)
        self.api.env.update(API_HOST=ctx.host, API_PORT=str(self.api.port))
        self.workers = [Worker(ctx, img["app"], i, env=app_env, volumes=volumes,
                               mem_limit=config.worker_mem_limit) for i in range(config.workers)]
        self.live: Live | None = None
        if config.with_live:
            self.live = Live(ctx, img["app"], env={
                "REFSTACK_BROKEN": ",".join(config.broken), "LIVE_HOST": ctx.host,
                "LIVE_DATA_DIR": "/data/live", **config.env},
                volumes={str(self.live_data_dir): {"bind": "/data/live", "mode": "rw"}})
            self.live_ingest_port, self.live_relay_port = ctx.port(), ctx.port()
            self.live.env.update(LIVE_PORT=str(self.live.port), LIVE_INGEST_PORT=str(self.live_ingest_port),
                                 LIVE_RELAY_PORT=str(self.live_relay_port))
        self.started_s: float | None = None
        self._extra_workers = 0  # workers made by new_workers(), for their names
        self.ready_at: dict[str, float] = {}  # seconds from start() to each service ready

    # -- wiring ----------------------------------------------------------------------------
    def _route_port(self, name: str) -> int:
        return self.routes[name].listen_port

    def _app_env(self) -> dict[str, str]:
        c = self.config
        pg = self.postgres
        env = {
            "DATABASE_URL": f"postgresql+psycopg://{pg.user}:{pg.password}@{self.ctx.host}:"
                            f"{self._route_port('database')}/{pg.database}",
            "REDIS_URL": self.redis.url(self._route_port("cache")),
            "BROKER_URL": self.rabbitmq.url(self._route_port("broker")),
            "ADMIN_TOKEN": self.admin_token,
            "STORAGE_DIR": "/data/storage",
            "ASSETS_DIR": "/data/assets",
            "RENDER_ENCODER": c.render_encoder,
            "WORKER_CONCURRENCY": str(c.worker_concurrency),
            "REFSTACK_BROKEN": ",".join(c.broken),
            "HOME": "/tmp",
            # The harness polls from 127.0.0.1 (its address as the stack sees it, for an engine
            # elsewhere); floods come from 127.0.0.2+ (api.flood), so the per-IP limit
            # (R §六.3: 10 r/s, burst 20) never throttles the harness itself.
            "RATE_LIMIT_IP_EXEMPT": self.ctx.client_address,
        }
        if self.provider:
            env["PROVIDER_URL"] = f"http://{self.ctx.host}:{self._route_port('provider')}"
            env["PROVIDER_KEYS"] = ",".join(c.provider_keys)
        env.update(c.env)
        return env

    @property
    def services(self) -> list[Service]:
        out: list[Service] = [self.postgres, self.redis, self.rabbitmq, self.storage]
        out += [s for s in (self.proxy, self.provider) if s is not None]
        out += [self.api, *self.workers]
        if self.live:
            out.append(self.live)
        return out

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> "Stack":
        t0 = time.monotonic()
        deadline = Deadline.after(self.config.start_timeout)
        try:
            self._create_storage_volume()
            first = [self.postgres, self.redis, self.rabbitmq, self.storage]
            first += [s for s in (self.proxy, self.provider) if s is not None]
            def ready(s: Service) -> None:
                s.wait_ready(deadline)
                self.ready_at[s.name] = round(time.monotonic() - t0, 2)

            with ThreadPoolExecutor(max_workers=12) as pool:
                list(pool.map(lambda s: s.start(), first))
                self.ready_at["(data stores created)"] = round(time.monotonic() - t0, 2)
                if self.proxy:
                    ready(self.proxy)
                self._populate_routes()
                later: list[Service] = [self.api, *self.workers] + ([self.live] if self.live else [])
                list(pool.map(lambda s: s.start(), later))
                self.ready_at["(app containers created)"] = round(time.monotonic() - t0, 2)
                list(pool.map(ready, self.services))
        except BaseException:
            self.stop()
            raise
        self.started_s = time.monotonic() - t0
        return self

    def stop(self) -> None:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda s: s.remove(), self.services))
        self._remove_storage_volume()

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- volumes and routes ----------------------------------------------------------------
    def _docker(self) -> Any:
        return self.ctx.engine.client()  # type: ignore[union-attr]

    def _create_storage_volume(self) -> None:
        # A size-limited tmpfs volume shared by the API and the workers: "disk full" is real ENOSPC.
        # Sized in 4 KiB pages (nr_blocks): podman 4.3 rejects tmpfs "size=" as a quota option.
        blocks = self.config.storage_mib * 256
        self._docker().volumes.create(
            name=self.storage_volume, driver="local",
            driver_opts={"type": "tmpfs", "device": "tmpfs", "o": f"nr_blocks={blocks},mode=1777"},
            labels=self.ctx.labels)

    def _remove_storage_volume(self) -> None:
        try:
            self._docker().volumes.get(self.storage_volume).remove(force=True)
        except Exception:  # noqa: BLE001 - absent already; the reaper sweeps by label too
            pass

    def _populate_routes(self) -> None:
        host = self.ctx.host
        body = [{"name": r.name, "listen": f"{host}:{r.listen_port}",
                 "upstream": f"{host}:{r.upstream_port}", "enabled": True}
                for r in self.routes.values()]
        try:
            resp = httpx.post(f"{self.proxy_url}/populate", json=body, timeout=10,
                              headers={"User-Agent": "renderchaos"})
        except httpx.HTTPError as exc:
            raise ProvisioningError(f"fault proxy at {self.proxy_url} unreachable: {exc}") from exc
        if resp.status_code != 201:
            raise ProvisioningError(f"fault proxy refused the routes: {resp.status_code} {resp.text[:300]}")

    def new_workers(self, count: int) -> list[Worker]:
        """``count`` more workers built like the stack's own (image, environment, volumes, memory
        limit), named from index 100 up (never a name the stack uses); not started."""
        model = self.workers[0]
        env = {k: v for k, v in model.env.items() if k != "WORKER_NAME"}
        first = 100 + self._extra_workers
        self._extra_workers += count
        return [Worker(self.ctx, model.image, first + i, env=env, volumes=dict(model.volumes),
                       mem_limit=model.mem_limit) for i in range(count)]

    # -- convenience -----------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        return self.api.base_url()

    def summary(self) -> dict[str, Any]:
        return {"stack_id": self.ctx.stack_id, "api": self.api_url, "proxy": self.proxy_url,
                "postgres": self.postgres.port, "redis": self.redis.port, "rabbitmq": self.rabbitmq.port,
                "workers": len(self.workers), "broken": list(self.config.broken),
                "pid": os.getpid()}
