"""Container-level faults: kill, stop/start, restart, freeze, memory limit and OOM, exec, ps.

These act on one :class:`~renderchaos.provisioning.stack.services.Service` of the reference stack (capability
``containers``). Every call maps engine errors to :class:`FaultInjectionError` (an injection that
fails must fail the test) and returns only when the engine confirms the new state.

Engines: every call goes to the engine the service runs on (``service.ctx.engine``): the podman
CLI for Podman, ``docker --host`` for a Docker engine (local socket, ``tcp://`` or ``ssh://``).

OOM: podman never sets ``State.OOMKilled`` here; Docker sets it when the container's main
process is OOM-killed, not when another process in it is (an ``exec``). So an OOM kill is
detected from the container's memory cgroup (``memory.oom_control`` -> ``oom_kill N``, cgroup
v1; ``memory.events`` -> ``oom_kill N``, cgroup v2) while it runs, the same on both engines, and
from exit code 137 plus the last counter read once it has exited. ``processes`` and the cgroup
reads need the engine on this machine (its /proc).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from renderchaos.errors import FaultHealError, FaultInjectionError
from renderchaos.wait import Deadline, Poll, wait_for

if TYPE_CHECKING:
    from renderchaos.provisioning.stack.services import Service


def _engine(service: "Service", *args: str, timeout: float = 60.0, heal: bool = False) -> str:
    engine = service.ctx.engine
    assert engine is not None  # StackContext always has one
    cmd = [*engine.cli_argv(), *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=engine.cli_env())
    except (OSError, subprocess.TimeoutExpired) as exc:
        err = FaultHealError if heal else FaultInjectionError
        raise err(f"`{shlex.join(cmd)}` failed: {exc}", service=service.name) from exc
    if proc.returncode != 0:
        err = FaultHealError if heal else FaultInjectionError
        raise err(f"`{shlex.join(cmd)}` exited {proc.returncode}: {proc.stderr.strip()[:500]}",
                  service=service.name)
    return proc.stdout


def state(service: "Service") -> dict:
    return service.state()


def kill(service: "Service", signal: str = "SIGKILL", timeout: float = 10.0) -> int | None:
    """Send ``signal`` to the container's main process; for SIGKILL, wait until it has exited and
    return its exit code (137)."""
    _engine(service, "kill", "--signal", signal, service.container_name)
    if signal not in ("SIGKILL", "KILL", "9"):
        return None
    st = wait_for(lambda: (s := service.state()).get("Running") is False and s,
                  what=f"{service.name} to exit after {signal}", timeout=timeout, poll=Poll(0.05))
    return st.get("ExitCode")


def stop(service: "Service", grace: float = 10.0) -> int | None:
    """Graceful stop (SIGTERM/STOPSIGNAL, then SIGKILL after ``grace`` s); returns the exit code."""
    _engine(service, "stop", "-t", str(int(grace)), service.container_name, timeout=grace + 30)
    return service.state().get("ExitCode")


def start(service: "Service", deadline: float | Deadline | None = 60.0) -> None:
    """Start a stopped container and, when ``deadline`` is given, wait for its readiness check."""
    _engine(service, "start", service.container_name, heal=True)
    if deadline is not None:
        service.wait_ready(deadline if isinstance(deadline, Deadline) else Deadline.after(deadline))


def restart(service: "Service", deadline: float = 60.0) -> None:
    stop(service, grace=5)
    start(service, deadline)


def pause(service: "Service") -> None:
    """Freeze every process of the container (cgroup freezer): no CPU, sockets stay open."""
    _engine(service, "pause", service.container_name)


def unpause(service: "Service") -> None:
    _engine(service, "unpause", service.container_name, heal=True)


@contextlib.contextmanager
def frozen(service: "Service") -> Iterator[None]:
    """``with frozen(worker):`` pauses it and always unpauses on exit."""
    pause(service)
    try:
        yield
    finally:
        unpause(service)


@contextlib.contextmanager
def stopped(service: "Service", ready_deadline: float = 60.0) -> Iterator[None]:
    """``with stopped(db):`` stops it and always starts it again (and waits until ready)."""
    stop(service)
    try:
        yield
    finally:
        start(service, ready_deadline)


def set_memory_limit(service: "Service", limit: str) -> None:
    """Change the memory limit of a running container (e.g. ``"96m"``); swap limited likewise."""
    _engine(service, "update", "--memory", limit, "--memory-swap", limit, service.container_name)


def _require_local(service: "Service", what: str) -> None:
    engine = service.ctx.engine
    if engine is not None and not engine.local:
        raise FaultInjectionError(f"{what} of {service.name} reads this machine's /proc, but its engine "
                                  f"({engine.docker_host}) runs elsewhere; run that scenario with a local engine",
                                  service=service.name)


def _memory_cgroup(service: "Service") -> Path | None:
    _require_local(service, "the memory cgroup")
    pid = service.state().get("Pid") or 0
    if not pid:
        return None
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return Path("/sys/fs/cgroup/memory") / path.lstrip("/")
        if controllers == "" and len(lines) == 1:  # cgroup v2 unified
            return Path("/sys/fs/cgroup") / path.lstrip("/")
    return None


def oom_kills(service: "Service") -> int:
    """Kernel OOM kills inside the running container's memory cgroup so far."""
    cg = _memory_cgroup(service)
    if cg is None:
        return 0
    for name in ("memory.oom_control", "memory.events"):
        f = cg / name
        if f.exists():
            for line in f.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
    return 0


def memory_limit(service: "Service") -> int | None:
    """The memory limit in force, in bytes, read from the container's cgroup (``podman update``
    changes the cgroup but not what ``inspect`` reports; Docker updates both)."""
    cg = _memory_cgroup(service)
    if cg is None:
        return None
    for name in ("memory.limit_in_bytes", "memory.max"):
        f = cg / name
        if f.exists():
            raw = f.read_text().strip()
            return None if raw == "max" else int(raw)
    return None


def oom_reported(service: "Service") -> bool:
    """``State.OOMKilled`` as the engine reports it (engine-specific: see the module docstring)."""
    return bool(service.state().get("OOMKilled"))


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    output: str


def exec_in(service: "Service", cmd: list[str], user: str | None = None) -> ExecResult:
    """Run ``cmd`` inside the container and return its exit code and combined output."""
    try:
        code, out = service.container.exec_run(cmd, user=user or "", demux=False)
    except Exception as exc:  # docker.errors.APIError and friends
        raise FaultInjectionError(f"exec {cmd} in {service.name} failed: {exc}", service=service.name) from exc
    return ExecResult(code, (out or b"").decode(errors="replace"))


@dataclass(frozen=True)
class Proc:
    pid: int  # as seen in the container (NSpid)
    ppid: int  # the parent, as seen on the host
    pgid: int
    stat: str
    elapsed_s: int
    args: str
    host_pid: int = 0  # as seen on the host


def processes(service: "Service") -> list[Proc]:
    """Processes inside the container, read from the host's /proc by PID namespace.

    No ``exec``: works in any image, costs no container process, and leaves no podman
    ``conmon`` behind (each exec leaves two for five minutes). Pids are as seen in the
    container (``NSpid``).
    """
    _require_local(service, "the process list")
    root = service.state().get("Pid") or 0
    if not root:
        return []
    try:
        ns = os.readlink(f"/proc/{root}/ns/pid")
    except OSError as exc:
        raise FaultInjectionError(f"cannot read the pid namespace of {service.name}: {exc}",
                                  service=service.name) from exc
    procs: list[Proc] = []
    clk = os.sysconf("SC_CLK_TCK")
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "ns/pid") != ns:
                continue
            stat = (entry / "stat").read_text()
            status = (entry / "status").read_text()
            args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue  # exited while we looked
        # /proc/PID/stat: "pid (comm) state ppid pgrp ..." ; comm may contain spaces
        rest = stat[stat.rindex(")") + 2:].split()
        nspid = _ns_ids(status, "NSpid")
        procs.append(Proc(pid=nspid, ppid=int(rest[1]), pgid=int(rest[2]), stat=rest[0],
                          elapsed_s=int(uptime - int(rest[19]) / clk), args=args, host_pid=int(entry.name)))
    return procs


def _ns_ids(status: str, key: str) -> int:
    for line in status.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[-1])  # innermost namespace
    return 0


def orphan_ffmpeg(service: "Service") -> list[Proc]:
    """ffmpeg processes alive in the container (any: callers run this when no job is running)."""
    return [p for p in processes(service) if p.args.split(" ", 1)[0].endswith("ffmpeg")
            and p.stat[:1] != "Z"]


# ---------------------------------------------------------------------------------------
# The same primitives as Fault objects (inject/heal), for ScenarioRun.inject().

@dataclass
class Stopped:
    """Graceful stop; healed by starting it again and waiting until it is ready."""

    service: "Service"
    grace: float = 10.0
    ready_timeout: float = 60.0

    def describe(self) -> str:
        return f"stop {self.service.name}"

    def inject(self) -> None:
        stop(self.service, self.grace)

    def heal(self) -> None:
        if not self.service.state().get("Running"):
            start(self.service, self.ready_timeout)


@dataclass
class Killed(Stopped):
    """SIGKILL (or another signal); healed by starting it again."""

    signal: str = "SIGKILL"

    def describe(self) -> str:
        return f"{self.signal} {self.service.name}"

    def inject(self) -> None:
        kill(self.service, self.signal)


@dataclass
class Frozen:
    """Every process of the container frozen (cgroup freezer); healed by unpausing."""

    service: "Service"

    def describe(self) -> str:
        return f"freeze {self.service.name}"

    def inject(self) -> None:
        pause(self.service)

    def heal(self) -> None:
        if self.service.state().get("Paused"):
            unpause(self.service)


@dataclass
class MemoryLimited:
    """Lower the container's memory limit (kernel OOM kills above it); healed by restoring it."""

    service: "Service"
    limit: str
    restore_to: str = "8g"

    def describe(self) -> str:
        return f"memory limit {self.limit} on {self.service.name}"

    def inject(self) -> None:
        set_memory_limit(self.service, self.limit)

    def heal(self) -> None:
        if self.service.state().get("Running"):
            set_memory_limit(self.service, self.restore_to)
