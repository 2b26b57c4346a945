"""Identity of one run and one stack: ids, labels, ports, host directories.

Everything a stack creates carries ``renderchaos.run=<run id>`` and
``renderchaos.stack=<stack id>``; the reaper removes by those labels, never by
testcontainers' machine-wide ``org.testcontainers`` label.
"""

from __future__ import annotations

import os
import secrets
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

LABEL_RUN = "renderchaos.run"
LABEL_STACK = "renderchaos.stack"
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


def run_tmp_root(run_id: str) -> Path:
    return Path(tempfile.gettempdir()) / f"{TMP_PREFIX}{run_id}"


@dataclass
class StackContext:
    run_id: str
    stack_id: str  # unique on the machine: starts with the owner
    owner: str = ""  # run id + xdist worker; defaults to the run id
    tmp_root: Path = field(init=False)
    _ports: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.owner = self.owner or self.run_id
        self.tmp_root = run_tmp_root(self.run_id) / self.stack_id
        self.tmp_root.mkdir(parents=True, exist_ok=True)

    @property
    def labels(self) -> dict[str, str]:
        return {LABEL_RUN: self.run_id, LABEL_OWNER: self.owner, LABEL_STACK: self.stack_id}

    def name(self, service: str) -> str:
        return f"rc-{self.stack_id}-{service}"

    def port(self) -> int:
        while True:
            p = free_port()
            if p not in self._ports:
                self._ports.add(p)
                return p

    def host_dir(self, name: str, mode: int = 0o777) -> Path:
        d = self.tmp_root / name
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, mode)
        return d
