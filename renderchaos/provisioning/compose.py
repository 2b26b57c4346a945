"""Start a platform from its compose file: the user's own ``docker-compose.yml``.

renderchaos reads the file itself (no docker-compose binary) and starts each service as a
labelled container with the guarantees of the reference stack: an isolated copy per xdist
worker (own ports, names, volumes), loopback only (host networking on 127.0.0.1, every service
on a port of its own), labels and reaping, one deadline for the whole start. Its own keys live
in ``x-renderchaos`` extension fields, which compose itself ignores::

    x-renderchaos:                       # top level: the platform
      platform: unmanic                  # adapter (entry point name or module:Class)
      api: {service: unmanic, path: ""}  # the API's base URL = http://127.0.0.1:<its port><path>
      settings: {...}                    # handed to the adapter (PlatformEndpoint.settings)
      admin_token: ${RENDERCHAOS_TOKEN}  # optional: an operator credential the adapter uses
      database_dsn: postgresql://...     # optional: direct read access for ledger checks
    services:
      db:
        image: postgres:15
        environment: {PGPORT: "${RENDERCHAOS_PORT}"}
        x-renderchaos:
          role: database                 # or a list: [api, worker]
          ready: {tcp: true}             # or {http: /health}, {log: "ready to accept"}
      api:
        build: ./api                     # or image:, or x-renderchaos.recipe: NAME (a renderchaos recipe)
        environment:
          DATABASE_URL: postgresql://app:secret@db:5432/app
          PORT: "${RENDERCHAOS_PORT}"
        x-renderchaos:
          role: api
          depends: {DATABASE_URL: db}    # this variable carries db's address: routed through the fault proxy
          ready: {http: /health}

Supported service keys: ``image``, ``build`` (context, dockerfile), ``command``, ``entrypoint``,
``environment`` (map or list), ``volumes`` (named volumes become per-stack volumes, or host
directories when ``x-renderchaos.host_dirs`` names them; ``./relative`` bind mounts are resolved
against the compose file), ``user``, ``working_dir``, ``init``, ``mem_limit``, ``tmpfs``,
``depends_on`` (start order), ``x-renderchaos``. Ignored with a note: ``ports``, ``networks``,
``restart``, ``healthcheck``, ``container_name`` (host networking, our names, our readiness).
Anything else is refused with the key named: silently dropping it would test another platform.

Variables ``${NAME}`` / ``${NAME:-default}`` are filled from: ``RENDERCHAOS_PORT`` (this service's
port), ``RENDERCHAOS_PORT_<SERVICE>``, ``RENDERCHAOS_HOST`` (127.0.0.1, or a remote engine's host), ``RENDERCHAOS_STACK``
(the stack id), ``RENDERCHAOS_DIR_<NAME>`` (a host directory of ``x-renderchaos.host_dirs``),
``RENDERCHAOS_EXTRA_PORT_<NAME>`` (a port of ``x-renderchaos.extra_ports``), ``RENDERCHAOS_SERVICE``
(the container's service name, ``worker-1`` for a replica), ``RENDERCHAOS_TOKEN`` (a secret made
fresh for each stack), ``RENDERCHAOS_CLIENT`` (the harness's address as the stack sees it), then
the environment. The top-level ``settings``, ``admin_token``, ``database_dsn`` and ``urls`` paths
are filled the same way. The reference stack itself is described like this in
``renderchaos/platforms/refstack/compose.yml``.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shlex
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from renderchaos.errors import ConfigError, ProvisioningError
from renderchaos.provisioning.stack.services import Readiness, Service, _tcp_open
from renderchaos.wait import Deadline, Poll

if TYPE_CHECKING:
    from renderchaos.provisioning.stack.context import StackContext
    from renderchaos.target import Target

SUPPORTED = {"image", "build", "command", "entrypoint", "environment", "volumes", "user", "working_dir", "init",
             "mem_limit", "tmpfs", "depends_on", "x-renderchaos"}
IGNORED = {"ports", "networks", "restart", "healthcheck", "container_name", "expose", "labels", "logging",
           "stop_grace_period", "hostname"}
X_SERVICE_KEYS = {"role", "ready", "depends", "recipe", "replicas", "port_env", "extra_ports"}
X_TOP_KEYS = {"platform", "api", "settings", "host_dirs", "urls", "admin_token", "database_dsn"}
DEPENDENCY_ROLES = ("database", "cache", "broker", "storage", "provider")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}|\$\$")


# ---------------------------------------------------------------------------------------
# the file
@dataclass
class ServiceSpec:
    name: str
    raw: dict[str, Any]
    roles: tuple[str, ...]
    ready: dict[str, Any]
    depends: dict[str, str]  # env var -> service whose address it carries
    recipe: str | None
    replicas: int
    port_env: str | None  # an env var to set to the service's port (e.g. PGPORT)
    after: tuple[str, ...]  # depends_on
    extra_ports: tuple[str, ...] = ()  # more ports: ${RENDERCHAOS_EXTRA_PORT_<NAME>}
    numbered: bool = False  # replicas are named <service>-<i> (declared with replicas > 1)


@dataclass
class ComposeSpec:
    path: Path
    platform: str
    api_service: str
    api_path: str
    settings: dict[str, Any]
    host_dirs: dict[str, str]  # name -> named volume (or bare name) the adapter may write
    urls: dict[str, dict[str, str]]  # other URLs by name: {service, path}
    services: dict[str, ServiceSpec]
    volumes: dict[str, dict[str, Any]] = field(default_factory=dict)  # top-level volumes: driver_opts
    notes: list[str] = field(default_factory=list)
    admin_token: str | None = None  # uninterpolated: ${RENDERCHAOS_TOKEN} is filled per stack
    database_dsn: str | None = None

    def order(self) -> list[list[ServiceSpec]]:
        """Start waves: a service starts after the ones in its depends_on."""
        done: set[str] = set()
        waves: list[list[ServiceSpec]] = []
        left = dict(self.services)
        while left:
            wave = [s for s in left.values() if set(s.after) <= done]
            if not wave:
                raise ConfigError(f"{self.path}: depends_on has a cycle among {sorted(left)}")
            waves.append(wave)
            for s in wave:
                done.add(s.name)
                del left[s.name]
        return waves


def platform_of(path: Path) -> str:
    """The adapter a compose file names (cheap: for collection-time decisions)."""
    try:
        return str(_read(path).get("x-renderchaos", {}).get("platform", "refstack"))
    except ConfigError:
        return "refstack"  # the fixture reports the file's problem with its own message


def _read(path: Path) -> dict[str, Any]:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"compose file {path} does not exist; pass --chaos-compose PATH") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"compose file {path} is not valid YAML: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict):
        raise ConfigError(f"{path}: no 'services:' mapping; is this a compose file?")
    return doc


def load_compose(path: Path) -> ComposeSpec:
    """Read and validate a compose file with renderchaos's extension fields."""
    path = path.resolve()
    doc = _read(path)
    top = doc.get("x-renderchaos")
    if not isinstance(top, dict) or not top.get("platform"):
        raise ConfigError(f"{path}: add a top-level 'x-renderchaos:' with at least 'platform: <adapter>' and "
                          "'api: {service: <name>}' (see docs/your-platform.md)")
    unknown = set(top) - X_TOP_KEYS
    if unknown:
        raise ConfigError(f"{path}: x-renderchaos has unknown keys {sorted(unknown)}; known: {sorted(X_TOP_KEYS)}")
    api = top.get("api") or {}
    if not isinstance(api, dict) or api.get("service") not in doc["services"]:
        raise ConfigError(f"{path}: x-renderchaos.api.service must name one of the services "
                          f"{sorted(doc['services'])}")
    notes: list[str] = []
    services: dict[str, ServiceSpec] = {}
    for name, raw in doc["services"].items():
        where = f"{path}: services.{name}"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where} must be a mapping")
        bad = set(raw) - SUPPORTED - IGNORED
        if bad:
            raise ConfigError(f"{where}: unsupported key(s) {sorted(bad)}. renderchaos starts compose services "
                              f"itself and supports {sorted(SUPPORTED)}; remove them or describe their effect "
                              "another way (docs/your-platform.md, 'compose subset')")
        for key in sorted(set(raw) & IGNORED):
            notes.append(f"{name}: '{key}' ignored (host networking on 127.0.0.1, renderchaos names and "
                         "readiness)")
        x = raw.get("x-renderchaos") or {}
        if not isinstance(x, dict):
            raise ConfigError(f"{where}.x-renderchaos must be a mapping")
        badx = set(x) - X_SERVICE_KEYS
        if badx:
            raise ConfigError(f"{where}.x-renderchaos: unknown keys {sorted(badx)}; known: {sorted(X_SERVICE_KEYS)}")
        roles = x.get("role", "other")
        roles = (roles,) if isinstance(roles, str) else tuple(roles)
        from renderchaos.target import ROLES

        wrong = [r for r in roles if r not in ROLES]
        if wrong:
            raise ConfigError(f"{where}.x-renderchaos.role: unknown role(s) {wrong}; roles are {', '.join(ROLES)}")
        if not (raw.get("image") or raw.get("build") or x.get("recipe")):
            raise ConfigError(f"{where}: needs 'image:', 'build:' or 'x-renderchaos.recipe:'")
        depends = dict(x.get("depends") or {})
        for var, target in depends.items():
            if target not in doc["services"]:
                raise ConfigError(f"{where}.x-renderchaos.depends: {var} names {target!r}, not a service of the file")
        ready = x.get("ready") or {"tcp": True}
        if not isinstance(ready, dict) or not ({"tcp", "http", "log", "running"} & set(ready)):
            raise ConfigError(f"{where}.x-renderchaos.ready: one of {{tcp: true}}, {{http: /path}}, "
                              f"{{log: regex}}, {{running: true}}; got {ready!r}")
        after = raw.get("depends_on") or []
        after = tuple(after) if isinstance(after, list) else tuple(after)  # list, or a mapping of conditions
        replicas = int(x.get("replicas", 1))
        services[name] = ServiceSpec(name, raw, roles, ready, depends, x.get("recipe"), replicas,
                                     x.get("port_env"), after, tuple(x.get("extra_ports") or ()), replicas > 1)
    for s in services.values():
        missing = [a for a in s.after if a not in services]
        if missing:
            raise ConfigError(f"{path}: services.{s.name}.depends_on names unknown service(s) {missing}")
    return ComposeSpec(path=path, platform=str(top["platform"]), api_service=api["service"],
                       api_path=str(api.get("path", "")), settings=dict(top.get("settings") or {}),
                       host_dirs=dict(top.get("host_dirs") or {}), urls=dict(top.get("urls") or {}),
                       services=services, volumes={k: dict(v or {}) for k, v in (doc.get("volumes") or {}).items()},
                       notes=notes, admin_token=_opt_str(top, "admin_token", path),
                       database_dsn=_opt_str(top, "database_dsn", path))


def _opt_str(top: dict[str, Any], key: str, path: Path) -> str | None:
    value = top.get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{path}: x-renderchaos.{key} must be a string, got {value!r}")
    return value


def interpolate(value: str, variables: dict[str, str], where: str) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, default = m.group(1), m.group(2)
        if name in variables:
            return variables[name]
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(f"{where}: ${{{name}}} is not set; export it, give a default (${{{name}:-value}}) or use "
                          "one of renderchaos's variables (RENDERCHAOS_PORT, RENDERCHAOS_PORT_<SERVICE>, "
                          "RENDERCHAOS_HOST, RENDERCHAOS_STACK, RENDERCHAOS_DIR_<NAME>)")

    return _VAR.sub(sub, value)


def _var_name(service: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", service).upper()


# ---------------------------------------------------------------------------------------
# the running stack
class ComposeService(Service):
    """One container of a compose stack (one replica)."""

    def __init__(self, ctx: "StackContext", image: str, spec: ServiceSpec, replica: int) -> None:
        self.spec = spec
        self.name = f"{spec.name}-{replica}" if spec.numbered else spec.name
        self.image_key = spec.name
        super().__init__(ctx, image)
        self._command: list[str] | None = None
        self._entrypoint: list[str] | None = None
        self._mounts: dict[str, dict[str, str]] = {}
        self._kwargs: dict[str, Any] = {}
        self.extra_ports = {n: ctx.port() for n in spec.extra_ports}

    @property
    def roles(self) -> tuple[str, ...]:
        return self.spec.roles

    def command(self) -> list[str] | None:
        return self._command

    def mounts_spec(self) -> dict[str, dict[str, str]]:
        return self._mounts

    def container_kwargs(self) -> dict[str, Any]:
        kw = dict(self._kwargs)
        if self._entrypoint is not None:
            kw["entrypoint"] = self._entrypoint
        return kw

    def base_url(self) -> str:
        return f"http://{self.ctx.host}:{self.port}"

    @property
    def address(self) -> tuple[str, int]:
        """Where the harness reaches this service directly (not through the fault proxy)."""
        return self.ctx.host, self.port

    def readiness(self) -> Readiness:
        r = self.spec.ready
        if "http" in r:
            url = f"{self.base_url()}{r['http']}"
            return Readiness(f"GET {url} answers 2xx", lambda: _http_ok_2xx(url), Poll(0.2))
        if "log" in r:
            pattern = re.compile(str(r["log"]))
            return Readiness(f"log line matching /{pattern.pattern}/",
                             lambda: bool(pattern.search(self.logs_since_start())),
                             Poll(0.2))
        if "running" in r:
            return Readiness("container running", lambda: self.state().get("Running"), Poll(0.1))
        return Readiness(f"TCP connect to {self.ctx.host}:{self.port}", lambda: _tcp_open(self.port, self.ctx.host), Poll(0.1))


def _http_ok_2xx(url: str) -> bool:
    import httpx

    r = httpx.get(url, timeout=2.0)
    if not 200 <= r.status_code < 300:
        from renderchaos.provisioning.stack.services import _NotReady

        raise _NotReady(f"{url} answered {r.status_code}: {r.text[:200]}")
    return True


@dataclass
class RouteSpec:
    role: str
    name: str
    listen_port: int
    upstream_port: int


class ComposeStack:
    """Every service of a compose file, started as one isolated, labelled stack."""

    def __init__(self, spec: ComposeSpec, ctx: "StackContext", start_timeout: float = 90.0,
                 image_overrides: dict[str, str] | None = None,
                 recipes: Callable[[list[str]], dict[str, str]] | None = None,
                 proxy_image: Callable[[], str] | None = None, toxiproxy_url: str | None = None,
                 cli: str = "podman", options: dict[str, Any] | None = None) -> None:
        self.options = dict(options or {})
        self.spec = _with_options(spec, self.options)
        self.ctx = ctx
        self.start_timeout = start_timeout
        self.image_overrides = dict(image_overrides or {})
        self._recipes = recipes
        self._proxy_image = proxy_image
        self.toxiproxy_url = toxiproxy_url
        self.cli = cli
        self.services: list[ComposeService] = []
        self.routes: dict[str, RouteSpec] = {}
        self.proxy: Service | None = None
        self.proxy_url: str | None = toxiproxy_url
        self.host_dirs: dict[str, Path] = {}
        self.volumes: list[str] = []
        self._volume_source: dict[str, str] = {}
        self.started_s: float | None = None
        self.variables: dict[str, str] = {}  # the stack-wide ${...} values, once planned
        self._route_of: dict[str, RouteSpec] = {}
        self._by_name: dict[str, ComposeService] = {}
        self._extra: list[ComposeService] = []  # workers added by new_workers()
        self.prepared = False  # the adapter's prepare() ran against this copy (plugin.scenario_target)

    # -- wiring ------------------------------------------------------------------------------
    def _images(self) -> dict[str, str]:
        out: dict[str, str] = {}
        recipes = sorted({s.recipe for s in self.spec.services.values() if s.recipe})
        if recipes:
            if self._recipes is None:
                raise ConfigError(f"{self.spec.path}: x-renderchaos.recipe needs renderchaos's image builder")
            resolved = self._recipes(recipes)
        for s in self.spec.services.values():
            if s.name in self.image_overrides:
                out[s.name] = self.image_overrides[s.name]
            elif s.recipe:
                out[s.name] = resolved[s.recipe]
            elif s.raw.get("build"):
                out[s.name] = self._build(s)
            else:
                out[s.name] = str(s.raw["image"])
        return out

    def _build(self, s: ServiceSpec) -> str:
        b = s.raw["build"]
        b = {"context": b} if isinstance(b, str) else dict(b)
        context = (self.spec.path.parent / str(b.get("context", "."))).resolve()
        dockerfile = b.get("dockerfile") or ("Containerfile" if (context / "Containerfile").exists() else "Dockerfile")
        h = hashlib.sha256()
        for p in sorted(context.rglob("*")):
            if p.is_file():
                h.update(str(p.relative_to(context)).encode())
                h.update(p.read_bytes())
        tag = f"localhost/renderchaos-compose/{_var_name(s.name).lower()}:{h.hexdigest()[:12]}"
        exists = subprocess.run([self.cli, "image", "inspect", tag], capture_output=True, timeout=60)
        if exists.returncode != 0:
            proc = subprocess.run([self.cli, "build", "--network", "host", "-f", str(context / dockerfile), "-t", tag,
                                   str(context)], capture_output=True, text=True, timeout=1800)
            if proc.returncode != 0:
                raise ProvisioningError(f"building {s.name} from {context / dockerfile} failed ({proc.returncode}):\n"
                                        f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}", service=s.name)
        return tag

    def _plan(self, images: dict[str, str]) -> None:
        ctx = self.ctx
        for s in self.spec.services.values():
            for i in range(s.replicas):
                self.services.append(ComposeService(ctx, images[s.name], s, i))
        by_name = {c.spec.name: c for c in self.services}  # first replica answers for the service
        variables = {"RENDERCHAOS_HOST": ctx.host, "RENDERCHAOS_STACK": ctx.stack_id,
                     "RENDERCHAOS_TOKEN": secrets.token_urlsafe(16), "RENDERCHAOS_CLIENT": ctx.client_address}
        self.variables = variables
        for c in self.services:
            variables[f"RENDERCHAOS_PORT_{_var_name(c.name)}"] = str(c.port)
        for name, volume in self.spec.host_dirs.items():
            d = ctx.host_dir(f"compose-{name}")
            self.host_dirs[name] = d
            variables[f"RENDERCHAOS_DIR_{_var_name(name)}"] = str(d)
        # one fault-proxy route per service something depends on, named by its role
        needed = {t for s in self.spec.services.values() for t in s.depends.values()}
        route_of: dict[str, RouteSpec] = {}
        for target in sorted(needed):
            svc = by_name[target]
            role = next((r for r in svc.roles if r in DEPENDENCY_ROLES), svc.roles[0])
            key = role if role not in self.routes else f"{role}:{target}"  # two databases: the second by name
            route_of[target] = self.routes[key] = RouteSpec(key, f"{ctx.stack_id}-{_var_name(key).lower()}",
                                                            ctx.port(), svc.port)
        self._route_of, self._by_name = route_of, by_name
        for c in self.services:
            self._configure(c)

    def _configure(self, c: ComposeService) -> None:
        """Environment (dependencies routed), command, mounts and limits of one container."""
        ctx, variables, route_of, by_name = self.ctx, self.variables, self._route_of, self._by_name
        where = f"{self.spec.path}: services.{c.spec.name}"
        own = {**variables, "RENDERCHAOS_PORT": str(c.port), "RENDERCHAOS_SERVICE": c.name,
               **{f"RENDERCHAOS_EXTRA_PORT_{_var_name(n)}": str(p) for n, p in c.extra_ports.items()}}
        raw = c.spec.raw
        env = raw.get("environment") or {}
        if isinstance(env, list):
            env = dict(e.split("=", 1) if "=" in e else (e, os.environ.get(e, "")) for e in env)
        c.env = {str(k): interpolate(str(v), own, f"{where}.environment.{k}") for k, v in env.items()}
        if c.spec.port_env:
            c.env[c.spec.port_env] = str(c.port)
        if set(c.roles) & APP_ROLES:
            c.env.update({str(k): str(v) for k, v in dict(self.options.get("env") or {}).items()})
        for var, target in c.spec.depends.items():
            if var not in c.env:
                raise ConfigError(f"{where}.x-renderchaos.depends names {var}, which is not in its environment")
            route = route_of[target]
            c.env[var] = _reroute(c.env[var], target, f"{ctx.host}:{route.listen_port}",
                                  by_name[target].port)
        if raw.get("command") is not None:
            c._command = _argv(raw["command"], own, f"{where}.command")
        if raw.get("entrypoint") is not None:
            c._entrypoint = _argv(raw["entrypoint"], own, f"{where}.entrypoint")
        for vol in raw.get("volumes") or []:
            self._mount(c, vol, own, where)
        kw: dict[str, Any] = {}
        if raw.get("user") is not None:
            kw["user"] = str(raw["user"])
        if raw.get("working_dir"):
            kw["working_dir"] = str(raw["working_dir"])
        if raw.get("init"):
            kw["init"] = True
        mem_limit = self.options.get("worker_mem_limit") if _is_worker(c.spec) else None
        mem_limit = mem_limit or raw.get("mem_limit")
        if mem_limit:
            kw["mem_limit"] = str(mem_limit)
            kw["memswap_limit"] = str(mem_limit)  # no swap: the limit is a real OOM line
        if raw.get("tmpfs"):
            t = raw["tmpfs"]
            kw["tmpfs"] = {p: "" for p in ([t] if isinstance(t, str) else t)}
        c._kwargs = kw

    def new_workers(self, count: int) -> list[ComposeService]:
        """``count`` more containers of the (first) worker-only service, configured like its
        replicas and named ``<service>-100``, ``-101``... (never a name the stack uses); not
        started. For scenarios that add workers (R §三.2: scale out a backlog)."""
        import dataclasses

        spec = next((s for s in self.spec.services.values() if _is_worker(s)), None)
        if spec is None:
            raise ConfigError(f"{self.spec.path}: no service has the role worker alone (an API that also works "
                              "cannot be scaled out without a second API)")
        model = self._by_name[spec.name]
        spec = dataclasses.replace(spec, numbered=True)
        made = [ComposeService(self.ctx, model.image, spec, 100 + len(self._extra) + i) for i in range(count)]
        for c in made:
            self._configure(c)
        self._extra += made
        return made

    def _mount(self, c: ComposeService, vol: Any, variables: dict[str, str], where: str) -> None:
        if isinstance(vol, dict):
            source, target, mode = vol.get("source", ""), vol["target"], "ro" if vol.get("read_only") else "rw"
        else:
            parts = interpolate(str(vol), variables, f"{where}.volumes").split(":")
            if len(parts) == 1:
                return  # anonymous volume: the engine makes it, rm -v drops it
            source, target = parts[0], parts[1]
            mode = parts[2] if len(parts) > 2 else "rw"
        if source.startswith((".", "/", "~")):
            host = Path(os.path.expanduser(source))
            host = host if host.is_absolute() else (self.spec.path.parent / host).resolve()
            c._mounts[str(host)] = {"bind": target, "mode": mode}
            return
        dir_name = next((n for n, v in self.spec.host_dirs.items() if v == source), None)
        if dir_name is not None:
            c._mounts[str(self.host_dirs[dir_name])] = {"bind": target, "mode": mode}
            return
        if source not in self.spec.volumes:
            raise ConfigError(f"{where}.volumes: named volume {source!r} is not declared under the top-level "
                              "'volumes:'")
        name = f"rc-{self.ctx.stack_id}-{source}"
        if name not in self.volumes:
            self.volumes.append(name)
            self._volume_source[name] = source
        c._mounts[name] = {"bind": target, "mode": mode}

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "ComposeStack":
        t0 = time.monotonic()
        deadline = Deadline.after(self.start_timeout)
        try:
            self._plan(self._images())
            self._create_volumes()
            if self.routes and self.proxy_url is None:
                from renderchaos.provisioning.stack.services import FaultProxy

                if self._proxy_image is None:
                    raise ConfigError(f"{self.spec.path}: dependencies through the fault proxy need its image")
                self.proxy = FaultProxy(self.ctx, self._proxy_image())
                self.proxy.start()
                self.proxy.wait_ready(deadline)
                self.proxy_url = self.proxy.base_url()  # type: ignore[attr-defined]
            if self.routes:
                self._populate()
            by_name: dict[str, list[ComposeService]] = {}
            for c in self.services:
                by_name.setdefault(c.spec.name, []).append(c)
            with ThreadPoolExecutor(max_workers=8) as pool:
                for wave in self.spec.order():
                    members = [c for s in wave for c in by_name[s.name]]
                    list(pool.map(lambda c: c.start(), members))
                    list(pool.map(lambda c: c.wait_ready(deadline), members))
        except BaseException:
            self.stop()
            raise
        self.started_s = time.monotonic() - t0
        return self

    def stop(self) -> None:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda s: s.remove(), [*self._extra, *self.services, *([self.proxy] if self.proxy else [])]))
        for v in self.volumes:
            subprocess.run([self.cli, "volume", "rm", "-f", v], capture_output=True, timeout=60)

    def _create_volumes(self) -> None:
        for v in self.volumes:
            labels = [a for k, val in self.ctx.labels.items() for a in ("--label", f"{k}={val}")]
            opts: list[str] = []
            decl = self.spec.volumes.get(self._volume_source[v], {})
            for key, val in dict(decl.get("driver_opts") or {}).items():
                if key == "o":
                    val = _tmpfs_size_to_blocks(str(val))
                opts += ["--opt", f"{key}={val}"]
            proc = subprocess.run([self.cli, "volume", "create", *labels, *opts, v], capture_output=True, text=True,
                                  timeout=60)
            if proc.returncode != 0:
                raise ProvisioningError(f"could not create volume {v}: {proc.stderr.strip()[:300]}")

    def _populate(self) -> None:
        import httpx

        body = [{"name": r.name, "listen": f"{self.ctx.host}:{r.listen_port}", "upstream": f"{self.ctx.host}:{r.upstream_port}",
                 "enabled": True} for r in self.routes.values()]
        try:
            resp = httpx.post(f"{self.proxy_url}/populate", json=body, timeout=10, headers={"User-Agent": "renderchaos"})
        except httpx.HTTPError as exc:
            raise ProvisioningError(f"fault proxy at {self.proxy_url} unreachable: {exc}") from exc
        if resp.status_code != 201:
            raise ProvisioningError(f"fault proxy refused the routes: {resp.status_code} {resp.text[:300]}")

    # -- the target ---------------------------------------------------------------------------
    def service(self, name: str) -> ComposeService:
        return next(c for c in self.services if c.spec.name == name)

    def target(self, timeout: float = 10.0) -> "Target":
        from renderchaos.platforms import load_platform
        from renderchaos.platforms.base import PlatformEndpoint
        from renderchaos.target import ContainerHandle, Target

        api = self.service(self.spec.api_service)
        where = f"{self.spec.path}: x-renderchaos"

        def fill(value: Any, key: str) -> Any:
            return interpolate(value, self.variables, f"{where}.{key}") if isinstance(value, str) else value

        urls = {n: f"{self.service(u['service']).base_url()}{fill(u.get('path', ''), f'urls.{n}.path')}"
                for n, u in self.spec.urls.items()}
        endpoint = PlatformEndpoint(api_url=f"{api.base_url()}{self.spec.api_path}", urls=urls,
                                    host_dirs=dict(self.host_dirs),
                                    settings={k: fill(v, f"settings.{k}") for k, v in self.spec.settings.items()},
                                    admin_token=fill(self.spec.admin_token, "admin_token"))
        dsn = fill(self.spec.database_dsn, "database_dsn")
        platform = load_platform(self.spec.platform, endpoint, timeout=timeout,
                                 where=f"{self.spec.path}: x-renderchaos.platform")
        services: dict[str, list[ContainerHandle]] = {}
        for c in self.services:
            for role in c.roles:
                services.setdefault(role, []).append(c)
        if self.proxy is not None:
            services.setdefault("proxy", []).append(self.proxy)
        return Target(name=f"{self.spec.path.name} ({self.ctx.stack_id})", kind="compose", platform=platform,
                      proxy_url=self.proxy_url, routes={r.role: r.name for r in self.routes.values()},
                      services=services, database_dsn=dsn, context=self.ctx,
                      new_workers=self.new_workers if any(_is_worker(s) for s in self.spec.services.values()) else None,
                      extras={"compose": str(self.spec.path), "notes": self.spec.notes})


#: the platform's own processes: a scenario's ``env`` option goes to these (not to its databases)
APP_ROLES = {"api", "worker", "live"}
#: what ``@pytest.mark.stack(...)`` may ask of a compose stack (a dedicated copy of it)
STACK_OPTIONS = {"workers", "env", "worker_mem_limit"}


def _is_worker(s: ServiceSpec) -> bool:
    """A service that only works (an API that also works, like Unmanic's, is never replicated)."""
    return "worker" in s.roles and "api" not in s.roles


def _with_options(spec: ComposeSpec, options: dict[str, Any]) -> ComposeSpec:
    """The spec for a scenario's own copy of the stack: ``workers`` replicas of each worker
    service; ``env`` and ``worker_mem_limit`` are applied in :meth:`ComposeStack._plan`."""
    import dataclasses

    unknown = set(options) - STACK_OPTIONS
    if unknown:
        raise ConfigError(f"{spec.path}: a scenario asked for stack option(s) {sorted(unknown)}, which a compose "
                          f"stack cannot honour (it takes {sorted(STACK_OPTIONS)}); run that scenario against the "
                          "reference stack, or drop the option")
    if "workers" not in options:
        return spec
    n = int(options["workers"])
    services = {name: dataclasses.replace(s, replicas=n, numbered=s.numbered or n > 1) if _is_worker(s) else s
                for name, s in spec.services.items()}  # two replicas never share a name
    return dataclasses.replace(spec, services=services)


def _tmpfs_size_to_blocks(o: str) -> str:
    """``size=256m`` -> ``nr_blocks=65536`` (4 KiB pages): podman 4.3 refuses tmpfs ``size=`` as a
    quota option, Docker takes either."""
    def conv(m: re.Match[str]) -> str:
        n, unit = int(m.group(1)), (m.group(2) or "").lower()
        mult = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit]
        return f"nr_blocks={max(1, n * mult // 4096)}"

    return re.sub(r"\bsize=(\d+)([kKmMgG]?)\b", conv, o)


def _argv(value: Any, variables: dict[str, str], where: str) -> list[str]:
    if isinstance(value, str):
        return shlex.split(interpolate(value, variables, where))
    return [interpolate(str(v), variables, where) for v in value]


def _reroute(value: str, service: str, address: str, port: int) -> str:
    """Point ``value`` (a URL or host:port naming ``service``) at ``address`` (the proxy route)."""
    # never the URL scheme: in redis://redis:6379 only the host is the service
    pattern = re.compile(rf"(?<![\w.-]){re.escape(service)}(?::\d+)?(?![\w-])(?!://)|127\.0\.0\.1:{port}\b|localhost:{port}\b")
    out, n = pattern.subn(address, value)
    if n == 0:
        raise ConfigError(f"x-renderchaos.depends: the value {value!r} does not name {service!r} (as host, "
                          f"host:port or 127.0.0.1:{port}); renderchaos cannot route it through the fault proxy")
    return out
