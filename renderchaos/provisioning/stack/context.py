"""Identity of one run and one stack: ids, labels, engine, addresses, ports, host directories.

Everything a stack creates carries ``renderchaos.run=<run id>`` and
``renderchaos.provisioning.stack=<stack id>``; the reaper removes by those labels, never by
testcontainers' machine-wide ``org.testcontainers`` label.

Addresses: the stack's containers use the engine host's network. ``StackContext.host`` is
where they bind and where the harness reaches them: 127.0.0.1 for an engine on a local socket,
the engine host's address for a ``tcp://`` or ``ssh://`` engine (``Engine.stack_host``).
"""

from __future__ import annotations

import os
import secrets
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from renderchaos.provisioning.engine.engine import STATE_DIR, Engine, engine_from_env, is_local_address, pid_alive

LABEL_RUN = "renderchaos.run"
LABEL_STACK = "renderchaos.provisioning.stack"
LABEL_SERVICE = "renderchaos.service"
LABEL_OWNER = "renderchaos.owner"  # the process that created it: run id + xdist worker
TMP_PREFIX = "renderchaos-"


def new_run_id() -> str:
    return secrets.token_hex(4)


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago on ``host`` (the kernel picks it at random)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# Service ports come from below the kernel's ephemeral range (32768+ by default), where bind(0)
# and every outgoing connection take theirs: a port picked there can be taken by any client
# socket before the container binds it (seen under load). A machine-wide registry under a file
# lock keeps concurrent stacks (xdist workers, other runs) from picking the same one.
PORT_RANGE = (20000, 32000)
PORT_REGISTRY = STATE_DIR / "ports"


def reserve_ports(count: int, owner_pid: int | None = None, host: str = "127.0.0.1") -> list[int]:
    """``count`` ports free on ``host``, recorded for this process until it exits.

    On a host that is not this machine (a remote engine) only the registry is consulted."""
    import fcntl
    import random

    pid = owner_pid or os.getpid()
    check_bind = is_local_address(host)
    PORT_REGISTRY.parent.mkdir(parents=True, exist_ok=True)
    with open(PORT_REGISTRY, "a+") as reg:
        fcntl.flock(reg, fcntl.LOCK_EX)
        reg.seek(0)
        taken: dict[int, int] = {}
        for line in reg.read().split():
            port, _, who = line.partition(":")
            if port.isdigit() and who.isdigit() and pid_alive(int(who)):
                taken[int(port)] = int(who)
        rng = random.SystemRandom()
        picked: list[int] = []
        for _ in range((PORT_RANGE[1] - PORT_RANGE[0]) * 2):
            if len(picked) == count:
                break
            port = rng.randrange(*PORT_RANGE)
            if port in taken or port in picked:
                continue
            if check_bind:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    try:
                        s.bind((host, port))
                    except OSError:
                        continue
            picked.append(port)
        if len(picked) < count:
            raise OSError(f"no {count} free ports left in {PORT_RANGE} on {host}")
        reg.seek(0)
        reg.truncate()
        reg.write("".join(f"{p}:{w}\n" for p, w in {**taken, **{p: pid for p in picked}}.items()))
        return picked


def source_address(host: str) -> str:
    """The address this machine's connections to ``host`` leave from (what the stack sees as the
    harness's client address; 127.0.0.1 for any loopback host)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((host, 9))  # UDP connect sends nothing: it only picks the route and source
        return s.getsockname()[0]


def run_tmp_root(run_id: str) -> Path:
    return Path(tempfile.gettempdir()) / f"{TMP_PREFIX}{run_id}"


@dataclass
class StackContext:
    run_id: str
    stack_id: str  # unique on the machine: starts with the owner
    owner: str = ""  # run id + xdist worker; defaults to the run id
    engine: Engine | None = None  # None: the engine this process was configured for
    host: str = field(init=False)  # where the stack's containers bind and are reached
    tmp_root: Path = field(init=False)
    _ports: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.owner = self.owner or self.run_id
        self.engine = self.engine or engine_from_env()
        self.host = self.engine.stack_host
        self.tmp_root = run_tmp_root(self.run_id) / self.stack_id
        self.tmp_root.mkdir(parents=True, exist_ok=True)

    @property
    def labels(self) -> dict[str, str]:
        return {LABEL_RUN: self.run_id, LABEL_OWNER: self.owner, LABEL_STACK: self.stack_id}

    def name(self, service: str) -> str:
        return f"rc-{self.stack_id}-{service}"

    def port(self) -> int:
        """A port for one service of this stack (see :func:`reserve_ports`)."""
        p = reserve_ports(1, host=self.host)[0]
        self._ports.add(p)
        return p

    @property
    def client_address(self) -> str:
        """The harness's own address as the stack sees it (exempt from the per-IP flood limit)."""
        return source_address(self.host)

    def host_dir(self, name: str, mode: int = 0o777) -> Path:
        d = self.tmp_root / name
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, mode)
        return d
