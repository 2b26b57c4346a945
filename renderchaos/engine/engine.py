"""Find a container engine, or bring up Podman's Docker-compatible socket.

Order: ``DOCKER_HOST`` if it answers, then ``/var/run/docker.sock``, then Podman
(its API service started on a socket of ours when nothing answers). The same
testcontainers code drives all three; only the socket differs.

A Podman service we start is shared by concurrent runs on the machine: each
run registers itself in ``STATE_DIR/users/``; the last run to leave (or its
reaper, after a SIGKILL) stops the service, so nothing of ours lingers.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from renderchaos.errors import EngineError
from renderchaos.wait import Poll, wait_for

STATE_DIR = Path(os.environ.get("RENDERCHAOS_STATE_DIR", "/run/renderchaos"))
PODMAN_SOCKET = STATE_DIR / "podman.sock"
PODMAN_PIDFILE = STATE_DIR / "podman-service.pid"
USERS_DIR = STATE_DIR / "users"

# docker-py asks the engine for its version on every new client unless told; podman's
# /version takes about 0.5 s, and testcontainers makes a client per container. 1.41 is
# what podman 4 implements and every Docker engine since 20.10 accepts.
DOCKER_API_VERSION = "1.41"

SETUP_HINT = "run `bash scripts/setup.sh` (installs podman, runc and mmdebstrap and configures them)"


@dataclass(frozen=True)
class Engine:
    kind: Literal["docker", "podman"]
    docker_host: str  # unix:///path
    cli: str  # "docker" or "podman": used for builds and for the reaper

    @property
    def socket_path(self) -> str:
        return self.docker_host.removeprefix("unix://")


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def ping(docker_host: str, timeout: float = 2.0) -> bool:
    """True when a Docker-compatible API answers ``/_ping`` on this unix socket."""
    if not docker_host.startswith("unix://"):
        return False
    conn = _UnixHTTPConnection(docker_host.removeprefix("unix://"), timeout)
    try:
        conn.request("GET", "/_ping")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def _cli_for(docker_host: str) -> str:
    # A socket served by podman is best driven by the podman CLI (builds, reaping).
    if "podman" in docker_host and shutil.which("podman"):
        return "podman"
    return "docker" if shutil.which("docker") else "podman"


def find_engine(user: str | None = None, start_podman: bool = True, timeout: float = 15.0) -> Engine:
    """Return a usable engine, starting Podman's API service if needed.

    ``user`` (a run id or owner) is registered as a user of a Podman service we start
    *before* the socket is checked, so another run's exit cannot stop the service under us.
    Call :func:`release_user` with it at the end.
    """
    with _engine_lock():
        if user is not None:
            register_user(user, os.getpid())
        return _find_locked(start_podman, timeout)


def _find_locked(start_podman: bool, timeout: float) -> Engine:
    env_host = os.environ.get("DOCKER_HOST", "")
    if env_host and ping(env_host):
        cli = _cli_for(env_host)
        return Engine(kind="podman" if cli == "podman" else "docker", docker_host=env_host, cli=cli)
    if ping("unix:///var/run/docker.sock") and shutil.which("docker"):
        # A real Docker engine answers: official images and a registry are likely.
        return Engine(kind="docker", docker_host="unix:///var/run/docker.sock", cli="docker")
    if not shutil.which("podman"):
        raise EngineError(
            "no container engine: DOCKER_HOST "
            + (f"({env_host}) does not answer" if env_host else "is unset")
            + ", /var/run/docker.sock does not answer and podman is not installed; "
            + SETUP_HINT,
        )
    host = f"unix://{PODMAN_SOCKET}"
    if not ping(host):
        if not start_podman:
            raise EngineError(f"podman's API socket {PODMAN_SOCKET} does not answer; {SETUP_HINT}")
        # Under the engine lock (find_engine): without it, xdist workers that found the socket
        # dead at the same moment each started a service, and all but one were never stopped.
        _start_podman_service(timeout)
    return Engine(kind="podman", docker_host=host, cli="podman")


def _start_podman_service(timeout: float) -> None:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    if PODMAN_SOCKET.exists():
        PODMAN_SOCKET.unlink()
    log = open(STATE_DIR / "podman-service.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{PODMAN_SOCKET}"],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,  # survives Ctrl-C of the test run; stopped by the last user
    )
    log.close()
    PODMAN_PIDFILE.write_text(str(proc.pid))
    host = f"unix://{PODMAN_SOCKET}"
    try:
        wait_for(lambda: proc.poll() is None and ping(host, 0.5) or proc.poll() is not None,
                 what=f"podman API service on {PODMAN_SOCKET}", timeout=timeout, poll=Poll(0.05))
    except Exception as exc:
        proc.kill()
        raise EngineError(
            f"podman system service did not answer on {PODMAN_SOCKET} within {timeout}s; "
            f"see {STATE_DIR / 'podman-service.log'}; {SETUP_HINT}") from exc
    if proc.poll() is not None:
        raise EngineError(
            f"podman system service exited with {proc.returncode}; "
            f"see {STATE_DIR / 'podman-service.log'}; {SETUP_HINT}")


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
    """Serialises starting, registering with and stopping the shared Podman service."""
    import fcntl

    STATE_DIR.mkdir(parents=True, exist_ok=True)
    lock = open(STATE_DIR / "engine.lock", "w")  # noqa: SIM115 - closed by the caller's with
    fcntl.flock(lock, fcntl.LOCK_EX)
    return lock


def release_user(run_id: str) -> None:
    """Forget ``run_id``; stop the Podman service(s) on our socket if no live run still uses one."""
    with _engine_lock():
        _release_locked(run_id)


def _release_locked(run_id: str) -> None:
    (USERS_DIR / run_id).unlink(missing_ok=True)
    for entry in USERS_DIR.glob("*") if USERS_DIR.exists() else []:
        try:
            if pid_alive(int(entry.read_text() or 0)):
                return
        except (ValueError, OSError):
            pass
        entry.unlink(missing_ok=True)
    PODMAN_PIDFILE.unlink(missing_ok=True)
    for pid in _our_services():  # every service on our socket, not only the one we recorded
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def _our_services() -> list[int]:
    """Pids of ``podman system service`` processes serving our socket."""
    found = []
    target = f"unix://{PODMAN_SOCKET}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if len(argv) > 3 and argv[0].endswith(b"podman") and argv[1:3] == [b"system", b"service"] \
                and target in argv:
            found.append(int(entry))
    return found


def docker_client(engine: Engine) -> "docker.DockerClient":  # type: ignore[name-defined]  # noqa: F821
    import docker

    return docker.DockerClient(base_url=engine.docker_host, version=DOCKER_API_VERSION, timeout=120)


def configure_testcontainers(engine: Engine) -> None:
    """Point testcontainers at ``engine`` (environment and its already-imported config)."""
    settings = {
        "DOCKER_HOST": engine.docker_host,
        "TESTCONTAINERS_RYUK_DISABLED": "true",  # Ryuk's image cannot be pulled; we reap by label
        "TESTCONTAINERS_CONNECTION_MODE": "docker_host",
        "TESTCONTAINERS_HOST_OVERRIDE": "127.0.0.1",  # /.dockerenv would make it guess a gateway IP
        "TC_POOLING_INTERVAL": "0.2",
    }
    os.environ.update(settings)
    from testcontainers.core.config import testcontainers_config as tc

    tc.ryuk_disabled = True
    tc.tc_host_override = "127.0.0.1"
    tc.sleep_time = 0.2
    try:
        from testcontainers.core.config import ConnectionMode

        tc.connection_mode_override = ConnectionMode.docker_host
    except ImportError:  # older testcontainers: the environment variable is enough
        pass
