"""Find a container engine, or bring one up on a socket of ours: Podman's API service or Docker.

Which engine: ``RENDERCHAOS_ENGINE`` = ``auto`` (default), ``docker`` or ``podman``.

* ``auto``: ``DOCKER_HOST`` if it answers, then ``/var/run/docker.sock``, then our own Docker
  engine if it is already up, then Podman (its API service started on our socket).
* ``docker``: ``DOCKER_HOST`` (``unix://``, ``tcp://`` or ``ssh://``; it must answer), else
  ``/var/run/docker.sock``, else Debian's ``dockerd`` started by us on our socket.
* ``podman``: Podman's API service on our socket (started when it does not answer).

The same testcontainers code drives all of them; only the socket differs. An engine reached
over ``tcp://`` or ``ssh://`` runs the stack's containers on its own host: the stack binds and
is reached at that host's address (:attr:`Engine.stack_host`), to which the loopback guard
applies (``--chaos-allow-remote`` for a host you own).

A service we start (Podman's API service, or ``dockerd``) is shared by concurrent runs on the
machine: each run registers itself in ``STATE_DIR/users/``; the last run to leave (or its
reaper, after a SIGKILL) stops it, so nothing of ours lingers. Both run with their working
directory in ``STATE_DIR`` (conmon writes an ``oom`` file into it on an OOM kill).
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from renderchaos.errors import ConfigError, EngineError
from renderchaos.wait import Poll, wait_for

def _default_state_dir() -> Path:
    """Sockets, pid files, logs and the users registry of the services we start.

    ``RENDERCHAOS_STATE_DIR`` if set; ``/run/renderchaos`` as root; else the user's runtime dir
    (a CI runner or a laptop user cannot write /run)."""
    if os.environ.get("RENDERCHAOS_STATE_DIR"):
        return Path(os.environ["RENDERCHAOS_STATE_DIR"])
    if os.geteuid() == 0:
        return Path("/run/renderchaos")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.access(runtime, os.W_OK):
        return Path(runtime) / "renderchaos"
    import tempfile

    return Path(tempfile.gettempdir()) / f"renderchaos-state-{os.geteuid()}"


STATE_DIR = _default_state_dir()
PODMAN_SOCKET = STATE_DIR / "podman.sock"
PODMAN_PIDFILE = STATE_DIR / "podman-service.pid"
USERS_DIR = STATE_DIR / "users"
# Our Docker engine: Debian's dockerd on its own socket, data and exec roots, so it never
# shadows (or is shadowed by) another Docker engine on the machine.
DOCKERD_SOCKET = STATE_DIR / "docker.sock"
DOCKERD_PIDFILE = STATE_DIR / "dockerd.pid"
DOCKERD_EXEC_ROOT = STATE_DIR / "docker-exec"
DOCKERD_DATA_ROOT = Path(os.environ.get("RENDERCHAOS_DOCKER_DATA_ROOT", "/var/lib/renderchaos/docker"))
DOCKERD_TCP_ENV = "RENDERCHAOS_DOCKERD_TCP"  # extra loopback listeners of our dockerd, "127.0.0.1:2375,..."
SYSTEM_DOCKER = "unix:///var/run/docker.sock"

STOP_WAIT_S = 30.0  # dockerd stops in about 1 s when no container runs, podman's service at once
ENGINE_ENV = "RENDERCHAOS_ENGINE"
STACK_HOST_ENV = "RENDERCHAOS_STACK_HOST"  # override the address derived from the engine host
ENGINE_CHOICES = ("auto", "docker", "podman")

# docker-py asks the engine for its version on every new client unless told; podman's
# /version takes about 0.5 s, and testcontainers makes a client per container. 1.41 is
# what podman 4 implements and every Docker engine since 20.10 accepts.
DOCKER_API_VERSION = "1.41"

SETUP_HINT = "run `bash scripts/setup.sh` (installs podman, runc and mmdebstrap and configures them)"
DOCKER_SETUP_HINT = ("run `RENDERCHAOS_ENGINE=docker bash scripts/setup.sh` (installs Debian's docker.io; "
                     "the engine is started on its own socket when a run needs it)")


@dataclass(frozen=True)
class Engine:
    kind: Literal["docker", "podman"]
    docker_host: str  # unix:///path, tcp://host:port or ssh://[user@]host[:port]
    cli: str  # "docker" or "podman": used for builds, faults and the reaper

    @property
    def socket_path(self) -> str:
        return self.docker_host.removeprefix("unix://")

    @property
    def scheme(self) -> str:
        return urlsplit(self.docker_host).scheme or "unix"

    @property
    def stack_host(self) -> str:
        """The address the stack's containers bind (host network) and the harness reaches them at."""
        return stack_host_for(self.docker_host)

    @property
    def local(self) -> bool:
        """True when the engine runs on this machine (its /proc and cgroups are ours)."""
        return self.scheme == "unix" or is_local_address(self.stack_host)

    @property
    def podman_cli(self) -> bool:
        """The podman CLI, which drives its local storage directly (no ``--host``)."""
        return self.kind == "podman" and Path(self.cli).name != "docker"

    def cli_argv(self) -> list[str]:
        """The CLI pointed at this engine."""
        return [self.cli] if self.podman_cli else [self.cli, "--host", self.docker_host]

    def cli_env(self) -> dict[str, str]:
        """Environment for the CLI: the classic builder reads local base images without a registry."""
        return dict(os.environ) if self.podman_cli else {**os.environ, "DOCKER_BUILDKIT": "0"}

    def client_kwargs(self) -> dict[str, Any]:
        """Arguments for ``docker.from_env`` / testcontainers' ``docker_client_kw`` aimed at this engine."""
        kw: dict[str, Any] = {"version": DOCKER_API_VERSION, "environment": {"DOCKER_HOST": self.docker_host}}
        if self.scheme == "ssh":
            kw["use_ssh_client"] = True  # the system's ssh (keys, known_hosts), not paramiko
        return kw

    def client(self, timeout: int = 120) -> "docker.DockerClient":  # type: ignore[name-defined]  # noqa: F821
        import docker

        return docker.from_env(timeout=timeout, **self.client_kwargs())


def stack_host_for(docker_host: str) -> str:
    """``127.0.0.1`` for a socket on this machine; the engine host's address for tcp:// and ssh://."""
    override = os.environ.get(STACK_HOST_ENV)
    if override:
        return override
    parts = urlsplit(docker_host)
    if parts.scheme in ("tcp", "ssh", "http", "https") and parts.hostname:
        try:
            infos = socket.getaddrinfo(parts.hostname, None, socket.AF_INET, socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise ConfigError(f"DOCKER_HOST {docker_host}: cannot resolve {parts.hostname!r}: {exc}; "
                              "fix DOCKER_HOST or set RENDERCHAOS_STACK_HOST to the engine host's address") from exc
        return infos[0][4][0]
    return "127.0.0.1"


def is_local_address(address: str) -> bool:
    """True when ``address`` belongs to this machine (we can bind it)."""
    try:
        if ipaddress.ip_address(address).is_loopback:
            return True
    except ValueError:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((address, 0))
        except OSError:
            return False
    return True


def ensure_engine_loopback(engine: Engine, allow_remote: bool) -> None:
    """The loopback guard, on what the run will actually target: the stack's host."""
    from renderchaos.config import ensure_loopback

    ensure_loopback(f"http://{engine.stack_host}", f"the stack's address (from DOCKER_HOST={engine.docker_host})",
                    allow_remote)


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def _get(docker_host: str, path: str, timeout: float) -> tuple[int, bytes] | None:
    parts = urlsplit(docker_host)
    if parts.scheme == "unix":
        conn: http.client.HTTPConnection = _UnixHTTPConnection(parts.path, timeout)
    elif parts.scheme in ("tcp", "http") and parts.hostname:
        conn = http.client.HTTPConnection(parts.hostname, parts.port or 2375, timeout=timeout)
    else:
        return None
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    except OSError:
        return None
    finally:
        conn.close()


def ping(docker_host: str, timeout: float = 2.0) -> bool:
    """True when a Docker-compatible API answers ``/_ping`` at ``docker_host``."""
    if docker_host.startswith("ssh://"):
        try:
            import docker

            return bool(docker.DockerClient(base_url=docker_host, version=DOCKER_API_VERSION, timeout=int(timeout) + 5,
                                            use_ssh_client=True).ping())
        except Exception:  # noqa: BLE001 - any failure means "does not answer"
            return False
    got = _get(docker_host, "/_ping", timeout)
    return got is not None and got[0] == 200


def engine_kind(docker_host: str, timeout: float = 5.0) -> Literal["docker", "podman"]:
    """What serves ``docker_host``: podman's compatible API names itself in ``/version``."""
    got = _get(docker_host, "/version", timeout)
    if got is not None and got[0] == 200:
        try:
            components = json.loads(got[1]).get("Components") or []
        except ValueError:
            components = []
        if any("podman" in str(c.get("Name", "")).lower() for c in components):
            return "podman"
        return "docker"
    return "podman" if "podman" in docker_host else "docker"


def _engine_at(docker_host: str) -> Engine:
    kind = engine_kind(docker_host)
    if kind == "podman" and docker_host.startswith("unix://") and shutil.which("podman"):
        return Engine(kind="podman", docker_host=docker_host, cli="podman")
    if not shutil.which("docker"):
        raise EngineError(f"a {kind} engine answers at {docker_host} but there is no `docker` CLI to drive it "
                          "(builds, faults, reaping); install docker-cli (Debian: docker.io)")
    return Engine(kind=kind, docker_host=docker_host, cli="docker")


def requested_kind() -> str:
    kind = os.environ.get(ENGINE_ENV, "auto").strip().lower() or "auto"
    if kind not in ENGINE_CHOICES:
        raise ConfigError(f"{ENGINE_ENV}={kind!r}: choose one of {', '.join(ENGINE_CHOICES)}")
    return kind


def find_engine(user: str | None = None, start: bool = True, timeout: float = 30.0,
                kind: str | None = None, allow_remote: bool = True) -> Engine:
    """Return a usable engine, starting Podman's API service or our dockerd if needed.

    ``user`` (a run id or owner) is registered as a user of a service we start *before* the
    socket is checked, so another run's exit cannot stop the service under us. Call
    :func:`release_user` with it at the end. ``allow_remote=False`` applies the loopback guard
    to the stack's address (a ``tcp://`` engine elsewhere needs ``--chaos-allow-remote``).
    """
    kind = kind or requested_kind()
    if kind not in ENGINE_CHOICES:
        raise ConfigError(f"engine {kind!r}: choose one of {', '.join(ENGINE_CHOICES)}")
    with _engine_lock():
        if user is not None:
            register_user(user, os.getpid())
        engine = _find_locked(kind, start, timeout)
    if not allow_remote:
        ensure_engine_loopback(engine, allow_remote)
    return engine


def _find_locked(kind: str, start: bool, timeout: float) -> Engine:
    env_host = os.environ.get("DOCKER_HOST", "")
    ours = f"unix://{DOCKERD_SOCKET}"
    if kind == "podman":
        return _podman_locked(start, timeout)
    if kind == "docker":
        if env_host and env_host != f"unix://{PODMAN_SOCKET}":  # not our own podman, set by an earlier run
            if not ping(env_host):
                raise EngineError(f"RENDERCHAOS_ENGINE=docker and DOCKER_HOST={env_host}, which does not answer; "
                                  "start that engine, or unset DOCKER_HOST to use our own Docker engine")
            engine = _engine_at(env_host)
            if engine.kind != "docker":
                raise EngineError(f"RENDERCHAOS_ENGINE=docker but DOCKER_HOST={env_host} is served by "
                                  f"{engine.kind}; unset DOCKER_HOST, or choose RENDERCHAOS_ENGINE=podman")
            return engine
        if ping(SYSTEM_DOCKER) and shutil.which("docker"):
            return Engine(kind="docker", docker_host=SYSTEM_DOCKER, cli="docker")
        if not ping(ours):
            if not start:
                raise EngineError(f"our Docker engine's socket {DOCKERD_SOCKET} does not answer; {DOCKER_SETUP_HINT}")
            _start_dockerd(timeout)
        return Engine(kind="docker", docker_host=ours, cli="docker")
    # auto
    if env_host and ping(env_host):
        return _engine_at(env_host)
    if ping(SYSTEM_DOCKER) and shutil.which("docker"):
        # A real Docker engine answers: official images and a registry are likely.
        return Engine(kind="docker", docker_host=SYSTEM_DOCKER, cli="docker")
    if ping(ours) and shutil.which("docker"):
        return Engine(kind="docker", docker_host=ours, cli="docker")
    if not shutil.which("podman"):
        raise EngineError(
            "no container engine: DOCKER_HOST "
            + (f"({env_host}) does not answer" if env_host else "is unset")
            + ", /var/run/docker.sock does not answer and podman is not installed; "
            + SETUP_HINT,
        )
    return _podman_locked(start, timeout)


def _podman_locked(start: bool, timeout: float) -> Engine:
    if not shutil.which("podman"):
        raise EngineError(f"RENDERCHAOS_ENGINE=podman but podman is not installed; {SETUP_HINT}")
    host = f"unix://{PODMAN_SOCKET}"
    if not ping(host):
        if not start:
            raise EngineError(f"podman's API socket {PODMAN_SOCKET} does not answer; {SETUP_HINT}")
        # Under the engine lock (find_engine): without it, xdist workers that found the socket
        # dead at the same moment each started a service, and all but one were never stopped.
        _start_podman_service(timeout)
    return Engine(kind="podman", docker_host=host, cli="podman")


def _spawn(argv: list[str], log_name: str) -> subprocess.Popen[bytes]:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    log = open(STATE_DIR / log_name, "ab")  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            cwd=STATE_DIR,  # conmon (podman) writes an `oom` file into its working directory
            start_new_session=True,  # survives Ctrl-C of the test run; stopped by the last user
        )
    finally:
        log.close()


def _await_socket(proc: subprocess.Popen[bytes], host: str, what: str, log_name: str, hint: str,
                  timeout: float) -> None:
    try:
        wait_for(lambda: proc.poll() is None and ping(host, 0.5) or proc.poll() is not None,
                 what=f"{what} on {host}", timeout=timeout, poll=Poll(0.05))
    except Exception as exc:
        proc.kill()
        raise EngineError(f"{what} did not answer on {host} within {timeout}s; "
                          f"see {STATE_DIR / log_name}; {hint}") from exc
    if proc.poll() is not None:
        raise EngineError(f"{what} exited with {proc.returncode}; last log lines:\n"
                          f"{_tail(STATE_DIR / log_name)}\nsee {STATE_DIR / log_name}; {hint}")


def _start_podman_service(timeout: float) -> None:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    if PODMAN_SOCKET.exists():
        PODMAN_SOCKET.unlink()
    proc = _spawn(["podman", "system", "service", "--time=0", f"unix://{PODMAN_SOCKET}"], "podman-service.log")
    PODMAN_PIDFILE.write_text(str(proc.pid))
    _await_socket(proc, f"unix://{PODMAN_SOCKET}", "podman system service", "podman-service.log", SETUP_HINT,
                  timeout)


def dockerd_argv() -> list[str]:
    """How we run Debian's dockerd: own socket, data and exec roots; no bridge, no iptables
    (containers use the host network on loopback; this sandbox has no iptables anyway)."""
    argv = ["dockerd", "--host", f"unix://{DOCKERD_SOCKET}", "--data-root", str(DOCKERD_DATA_ROOT),
            "--exec-root", str(DOCKERD_EXEC_ROOT), "--pidfile", str(DOCKERD_PIDFILE),
            "--iptables=false", "--ip6tables=false", "--bridge=none", "--log-level=warn"]
    for addr in filter(None, (a.strip() for a in os.environ.get(DOCKERD_TCP_ENV, "").split(","))):
        host, _, port = addr.rpartition(":")
        if not port.isdigit() or not is_local_address(host) or not ipaddress.ip_address(host).is_loopback:
            raise ConfigError(f"{DOCKERD_TCP_ENV}: {addr!r} must be a loopback HOST:PORT such as 127.0.0.1:2375 "
                              "(an unauthenticated Docker API is root on this machine: never expose it)")
        argv += ["--host", f"tcp://{addr}"]
    return argv


def _start_dockerd(timeout: float) -> None:
    if not shutil.which("dockerd"):
        raise EngineError(f"RENDERCHAOS_ENGINE=docker: no Docker engine answers and dockerd is not installed; "
                          f"{DOCKER_SETUP_HINT}")
    if not shutil.which("docker"):
        raise EngineError(f"dockerd is installed but the docker CLI is not; {DOCKER_SETUP_HINT}")
    for stale in _our_dockerds():  # a dockerd of ours that stopped answering: replace it
        _terminate([stale], "dockerd", 15.0)
    DOCKERD_SOCKET.unlink(missing_ok=True)
    DOCKERD_PIDFILE.unlink(missing_ok=True)
    DOCKERD_DATA_ROOT.mkdir(parents=True, exist_ok=True)
    proc = _spawn(dockerd_argv(), "dockerd.log")
    _await_socket(proc, f"unix://{DOCKERD_SOCKET}", "dockerd", "dockerd.log", DOCKER_SETUP_HINT, timeout)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def register_user(run_id: str, pid: int) -> None:
    """Record that run ``run_id`` (process ``pid``) uses the shared engine service."""
    USERS_DIR.mkdir(parents=True, exist_ok=True)
    (USERS_DIR / run_id).write_text(str(pid))


def _engine_lock() -> Any:
    """Serialises starting, registering with and stopping the shared engine services."""
    import fcntl

    STATE_DIR.mkdir(parents=True, exist_ok=True)
    lock = open(STATE_DIR / "engine.lock", "w")  # noqa: SIM115 - closed by the caller's with
    fcntl.flock(lock, fcntl.LOCK_EX)
    return lock


def live_users() -> list[str]:
    """Runs registered as users whose process is still alive (dead entries are dropped)."""
    alive = []
    for entry in sorted(USERS_DIR.glob("*")) if USERS_DIR.exists() else []:
        try:
            if pid_alive(int(entry.read_text() or 0)):
                alive.append(entry.name)
                continue
        except (ValueError, OSError):
            pass
        entry.unlink(missing_ok=True)
    return alive


def release_user(run_id: str) -> None:
    """Forget ``run_id``; stop the services on our sockets if no live run still uses one."""
    with _engine_lock():
        _release_locked(run_id)


def _release_locked(run_id: str) -> None:
    (USERS_DIR / run_id).unlink(missing_ok=True)
    if live_users():
        return
    # Wait for the exit, under the engine lock: a service that is shutting down still answers
    # for a moment, and a run starting then would take it for a live one.
    _stop_services(wait_s=STOP_WAIT_S)


def stop_services(wait_s: float = 30.0, force: bool = False) -> list[str]:
    """Stop the Podman API service and dockerd of ours unless a live run uses them (or ``force``).
    Returns what was stopped; waits up to ``wait_s`` for the processes to exit."""
    with _engine_lock():
        users = live_users()
        if users and not force:
            raise EngineError(f"runs {users} still use the engine; let them finish (or pass --force)")
        return _stop_services(wait_s)


def _stop_services(wait_s: float) -> list[str]:
    PODMAN_PIDFILE.unlink(missing_ok=True)
    stopped = []
    podmans, dockerds = _our_services(), _our_dockerds()
    # every service on our sockets, not only the one we recorded
    stopped += _terminate(podmans, "podman system service", wait_s)
    stopped += _terminate(dockerds, "dockerd", wait_s)
    if dockerds and wait_s > 0:
        stopped += unmount_under(DOCKERD_EXEC_ROOT)
    return stopped


def unmount_under(root: Path) -> list[str]:
    """Unmount what a stopped dockerd leaves mounted under its exec root (it bind-mounts the host's
    network namespace at ``netns/default`` for host-network containers and never unmounts it)."""
    done = []
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return done
    prefix = str(root).rstrip("/") + "/"
    points = [m.split()[1] for m in mounts if len(m.split()) > 1 and m.split()[1].startswith(prefix)]
    for point in sorted(points, key=len, reverse=True):  # deepest first
        if subprocess.run(["umount", point], capture_output=True, timeout=30).returncode == 0:
            done.append(f"mount {point}")
    return done


def _terminate(pids: list[int], what: str, wait_s: float) -> list[str]:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    if pids and wait_s > 0:
        try:
            wait_for(lambda: not any(pid_alive(p) and not _zombie(p) for p in pids),
                     what=f"{what} {pids} to exit", timeout=wait_s, poll=Poll(0.1))
        except Exception as exc:  # noqa: BLE001 - say so; a stuck daemon needs a look
            raise EngineError(f"{what} {pids} did not exit within {wait_s}s of SIGTERM; "
                              f"see {STATE_DIR}/*.log and stop it by pid") from exc
    return [f"{what} (pid {p})" for p in pids]


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2:].startswith("Z")


def _cmdlines() -> list[tuple[int, list[bytes]]]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                out.append((int(entry), f.read().split(b"\0")))
        except OSError:
            continue
    return out


def _our_services() -> list[int]:
    """Pids of ``podman system service`` processes serving our socket."""
    target = f"unix://{PODMAN_SOCKET}".encode()
    return [pid for pid, argv in _cmdlines()
            if len(argv) > 3 and argv[0].endswith(b"podman") and argv[1:3] == [b"system", b"service"]
            and target in argv]


def _our_dockerds() -> list[int]:
    """Pids of ``dockerd`` processes serving our socket."""
    target = f"unix://{DOCKERD_SOCKET}".encode()
    return [pid for pid, argv in _cmdlines() if argv and argv[0].endswith(b"dockerd") and target in argv]


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def docker_client(engine: Engine) -> "docker.DockerClient":  # type: ignore[name-defined]  # noqa: F821
    return engine.client()


def engine_from_env() -> Engine:
    """The engine this process was pointed at by :func:`configure_testcontainers`."""
    host = os.environ.get("DOCKER_HOST") or f"unix://{PODMAN_SOCKET}"
    kind = os.environ.get("RENDERCHAOS_ENGINE_KIND") or ("podman" if "podman" in host else "docker")
    cli = "podman" if kind == "podman" and host.startswith("unix://") and shutil.which("podman") else "docker"
    return Engine(kind="podman" if kind == "podman" else "docker", docker_host=host, cli=cli)


def configure_testcontainers(engine: Engine | None) -> None:
    """Point testcontainers (and this process's default engine) at ``engine``.

    ``None``: only the engine-independent settings (no Ryuk; containers of a StackContext carry
    their own engine, so one process can drive podman and docker side by side)."""
    settings = {
        "TESTCONTAINERS_RYUK_DISABLED": "true",  # Ryuk's image cannot be pulled; we reap by label
        "TESTCONTAINERS_CONNECTION_MODE": "docker_host",
        "TC_POOLING_INTERVAL": "0.2",
    }
    if engine is not None:
        settings.update({
            "DOCKER_HOST": engine.docker_host,
            "RENDERCHAOS_ENGINE_KIND": engine.kind,
            "TESTCONTAINERS_HOST_OVERRIDE": engine.stack_host,  # /.dockerenv would make it guess a gateway IP
        })
    os.environ.update(settings)
    from testcontainers.core.config import testcontainers_config as tc

    tc.ryuk_disabled = True
    if engine is not None:
        tc.tc_host_override = engine.stack_host
    tc.sleep_time = 0.2
    try:
        from testcontainers.core.config import ConnectionMode

        tc.connection_mode_override = ConnectionMode.docker_host
    except ImportError:  # older testcontainers: the environment variable is enough
        pass
