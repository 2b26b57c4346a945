"""What the suite runs against: a platform adapter bound to one deployment, and what the harness
may do to that deployment.

A :class:`Target` is built from the reference stack, from a stack started from the user's
compose file, or from a target file describing a running deployment. Scenarios see only the
target: its :class:`~renderchaos.platforms.base.Platform` (operations in platform terms) and its
fault surface, addressed by **role** (``api``, ``worker``, ``database``, ``cache``, ``broker``,
``storage``, ...):

* ``routes``: role -> fault-proxy route in front of that dependency (network faults);
* ``services``: role -> containers the harness may kill, stop, pause, limit, exec in;
* ``database_dsn``: direct read access to the platform's database (ledger and plan checks).

A scenario that needs something the target lacks is skipped naming it (never passed). The
capability strings a scenario names: a platform feature (``credits``, ``assets``...), or
``fault_proxy:<role>``, ``containers:<role>``, ``database``, ``database:<schema>`` (the database
of a platform whose tables the harness knows: ``database:refstack``), ``sidecars`` (a stack
renderchaos started, beside which it may start containers of its own: Prometheus),
``configurable`` (a stack renderchaos starts, so ``@pytest.mark.stack(...)`` options apply),
``scale:worker`` (more workers can be added), ``reference_stack`` (the Python-started reference stack itself: its StackConfig, its live
encoders, more workers on demand).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Protocol

import pytest

from renderchaos.config import ensure_loopback, expand_env
from renderchaos.errors import ConfigError
from renderchaos.platforms.base import Feature, Platform, PlatformEndpoint

if TYPE_CHECKING:
    from renderchaos.provisioning.stack.context import StackContext
    from renderchaos.provisioning.stack.stack import Stack
    from renderchaos.wait import Deadline

#: roles a compose file or a target file may give a service
ROLES = ("api", "worker", "database", "cache", "broker", "storage", "provider", "live", "proxy", "other")


class ContainerHandle(Protocol):
    """One container the harness may act on (reference stack, compose stack, or a disposable
    deployment's named container). Container faults take these."""

    name: str  # the service's name in its stack ("worker-0", "api", "db")

    @property
    def container_name(self) -> str: ...

    @property
    def container(self) -> Any: ...  # the docker-py container

    def state(self) -> dict[str, Any]: ...

    def logs(self, tail: int = 40) -> str: ...

    def wait_ready(self, deadline: "Deadline") -> None: ...


class MissingCapability(pytest.skip.Exception):  # type: ignore[name-defined,misc]
    """Raised by :meth:`Target.require`: a skip naming what the target lacks, never a pass."""


@dataclass
class Target:
    name: str
    kind: Literal["stack", "compose", "external"]
    platform: Platform
    proxy_url: str | None = None
    routes: dict[str, str] = field(default_factory=dict)  # role -> fault-proxy route name
    services: dict[str, list[ContainerHandle]] = field(default_factory=dict)  # role -> containers
    database_dsn: str | None = None
    stack: "Stack | None" = None  # the reference stack, when this is one (its StackConfig, assets...)
    #: the labelled context of a stack renderchaos started: where the harness may start its own
    #: containers beside the platform (Prometheus), reaped with the run
    context: "StackContext | None" = None
    #: more worker containers built like the running ones (unstarted): a stack renderchaos started
    new_workers: "Callable[[int], list[Any]] | None" = None
    extras: dict[str, Any] = field(default_factory=dict)  # deployment facts (live ports, provider...)
    disposable: bool = True  # container faults allowed (always for stacks we start)

    # -- capabilities -----------------------------------------------------------------------
    @property
    def capabilities(self) -> frozenset[str]:
        caps = {f.value for f in self.platform.features}
        caps |= set(self.platform.endpoint.urls)  # control endpoints the deployment exposes ("provider_control")
        if self.proxy_url:
            caps |= {"fault_proxy", *(f"fault_proxy:{r}" for r in self.routes)}
        if self.services and self.disposable:
            caps |= {"containers", *(f"containers:{r}" for r in self.services)}
            api = {id(c) for c in self.services.get("api", [])}
            if any(id(c) not in api for c in self.services.get("worker", [])):
                caps.add("separate:worker")  # a worker can be stopped while the API keeps answering
        if self.database_dsn:
            caps.add("database")
            if self.platform.schema:
                caps.add(f"database:{self.platform.schema}")  # its tables, as the harness knows them
        if self.context is not None:
            caps.add("sidecars")  # containers of the harness beside the platform
            caps.add("configurable")  # started again with a scenario's options (mark.stack)
        if self.new_workers is not None and self.disposable:
            caps.add("scale:worker")
        if self.stack is not None:
            caps.add("reference_stack")
        return frozenset(caps)

    def has(self, *caps: str) -> bool:
        return {_norm(c) for c in caps} <= self.capabilities

    def missing(self, *caps: str) -> list[str]:
        return sorted({_norm(c) for c in caps} - self.capabilities)

    def require(self, *caps: str) -> None:
        missing = self.missing(*caps)
        if missing:
            hint = ""
            if self.kind == "external" and any(m.startswith("containers") for m in missing):
                hint = ("; container faults on a running deployment need disposable = true and the containers "
                        "they may touch listed under [containers] in the target file (blast radius)")
            elif any(m.startswith("fault_proxy") for m in missing) and self.kind == "external":
                hint = "; network faults need toxiproxy_url and a [routes] entry for that role in the target file"
            raise MissingCapability(f"target {self.name!r} ({self.kind}, platform {self.platform.name}) lacks "
                                    f"{missing}{hint}")

    # -- the fault surface by role ----------------------------------------------------------
    def route(self, role: str) -> str:
        """The fault-proxy route in front of the ``role`` dependency."""
        self.require(f"fault_proxy:{role}")
        return self.routes[role]

    def containers(self, role: str) -> list[ContainerHandle]:
        """Every container of ``role`` (all workers, say)."""
        self.require(f"containers:{role}")
        return list(self.services[role])

    def container(self, role: str, index: int = 0) -> ContainerHandle:
        found = self.containers(role)
        if index >= len(found):
            raise ConfigError(f"target {self.name!r} has {len(found)} {role} container(s); asked for #{index}")
        return found[index]

    def all_containers(self) -> list[ContainerHandle]:
        return [c for cs in self.services.values() for c in cs]

    # -- builders ---------------------------------------------------------------------------
    @classmethod
    def from_stack(cls, stack: "Stack", timeout: float = 10.0) -> "Target":
        """The reference stack, through its adapter."""
        from renderchaos.platforms.refstack import RefstackPlatform

        urls = {}
        if stack.live:
            urls["live"] = stack.live.base_url()
        if stack.provider:
            urls["provider_control"] = stack.provider.base_url()
        endpoint = PlatformEndpoint(api_url=stack.api_url, admin_token=stack.admin_token, urls=urls,
                                    host_dirs={"assets": stack.assets_dir})
        services: dict[str, list[ContainerHandle]] = {
            "api": [stack.api], "worker": list(stack.workers), "database": [stack.postgres],
            "cache": [stack.redis], "broker": [stack.rabbitmq], "storage": [stack.storage]}
        if stack.provider:
            services["provider"] = [stack.provider]
        if stack.live:
            services["live"] = [stack.live]
        if stack.proxy is not None:
            services["proxy"] = [stack.proxy]
        return cls(name=f"reference stack {stack.ctx.stack_id}", kind="stack",
                   platform=RefstackPlatform(endpoint, timeout=timeout), proxy_url=stack.proxy_url,
                   routes={role: r.name for role, r in stack.routes.items()}, services=services,
                   database_dsn=stack.postgres.dsn(), stack=stack, context=stack.ctx,
                   new_workers=stack.new_workers)

    def close(self) -> None:
        self.platform.close()


def _norm(cap: str | Feature) -> str:
    return cap.value if isinstance(cap, Feature) else str(cap)


# ---------------------------------------------------------------------------------------
# target files: a running deployment

def load_target_file(path: Path, allow_remote: bool = False, timeout: float = 10.0) -> "Target":
    """Read and validate a target file (TOML; see examples/target.example.toml)."""
    from renderchaos.platforms import load_platform

    where = str(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"target file {path} does not exist; pass --chaos-target PATH "
                          "(see examples/target.example.toml)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"target file {path} is not valid TOML: {exc}") from exc
    t = raw.get("target")
    if not isinstance(t, dict):
        raise ConfigError(f"{where}: missing [target] table (see examples/target.example.toml)")
    for key in ("name", "api_url"):
        if not isinstance(t.get(key), str) or not t[key]:
            raise ConfigError(f"{where}: [target] needs a string {key!r}")
    if "capabilities" in t:
        raise ConfigError(f"{where}: [target].capabilities is gone: what the harness may do now follows from "
                          "the platform adapter (platform = ...) and from toxiproxy_url / [routes], database_dsn "
                          "and disposable + [containers]; remove the key")
    api_url = expand_env(t["api_url"], f"{where} [target].api_url")
    ensure_loopback(api_url, f"{where} [target].api_url", allow_remote)
    urls: dict[str, str] = {}
    for key, url in dict(t.get("urls", {})).items():
        urls[key] = expand_env(str(url), f"{where} [target.urls].{key}")
        ensure_loopback(urls[key], f"{where} [target.urls].{key}", allow_remote)
    proxy_url = expand_env(t["toxiproxy_url"], f"{where} [target].toxiproxy_url") if t.get("toxiproxy_url") else None
    if proxy_url:
        ensure_loopback(proxy_url, f"{where} [target].toxiproxy_url", allow_remote)
    dsn = expand_env(t["database_dsn"], f"{where} [target].database_dsn") if t.get("database_dsn") else None
    admin = expand_env(t["admin_token"], f"{where} [target].admin_token") if t.get("admin_token") else None
    routes = raw.get("routes", {})
    if not isinstance(routes, dict) or not all(isinstance(v, str) for v in routes.values()):
        raise ConfigError(f"{where}: [routes] maps roles ({', '.join(ROLES)}) to Toxiproxy proxy names")
    _check_roles(routes, f"{where} [routes]")
    if routes and not proxy_url:
        raise ConfigError(f"{where}: [routes] names Toxiproxy proxies but [target].toxiproxy_url is unset")
    host_dirs = {k: Path(expand_env(str(v), f"{where} [target.host_dirs].{k}"))
                 for k, v in dict(t.get("host_dirs", {})).items()}
    endpoint = PlatformEndpoint(api_url=api_url, admin_token=admin, urls=urls, host_dirs=host_dirs,
                                settings=dict(raw.get("platform", {})))
    spec = t.get("platform", "refstack")
    platform = load_platform(spec, endpoint, timeout=timeout, where=f"{where} [target].platform")
    disposable = bool(t.get("disposable", False))
    containers = raw.get("containers", {})
    if containers and not disposable:
        raise ConfigError(
            f"{where}: [containers] lists containers, but [target].disposable is not true. Container faults "
            "(kill, stop, pause, OOM) are destructive: set disposable = true only for a deployment you may "
            "break, or remove [containers]")
    _check_roles(containers, f"{where} [containers]")
    services: dict[str, list[ContainerHandle]] = {}
    if containers:
        from renderchaos.provisioning.external import NamedContainer

        for role, names in containers.items():
            names = [names] if isinstance(names, str) else list(names)
            services[role] = [NamedContainer(n, role) for n in names]
    return Target(name=t["name"], kind="external", platform=platform, proxy_url=proxy_url, routes=dict(routes),
                  services=services, database_dsn=dsn, disposable=disposable)


def _check_roles(mapping: dict[str, Any], where: str) -> None:
    unknown = sorted(set(mapping) - set(ROLES))
    if unknown:
        raise ConfigError(f"{where}: unknown role(s) {unknown}; roles are {', '.join(ROLES)}")
