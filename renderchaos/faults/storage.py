"""Storage faults: the shared output volume (``/data/storage``) filled to ENOSPC.

The stack's storage volume is a size-limited tmpfs shared by the API and the workers, so a
full volume is a real ``No space left on device`` for every writer. :class:`StorageFilled`
fills it from inside a container (``fallocate``, then ``dd`` up to the last block), leaving
``leave_bytes`` free, and heals by deleting its filler file. The filler is a hidden file,
never a ``<job>.mp4``, so it cannot be mistaken for an output.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
import uuid

from renderchaos.errors import FaultHealError, FaultInjectionError
from renderchaos.faults.container import exec_in

if TYPE_CHECKING:
    from renderchaos.provisioning.stack.services import Service

STORAGE_MOUNT = "/data/storage"
#: never fill more than this: a bigger filesystem is the host's disk, not a test volume
MAX_FILL_BYTES = 4 * 1024**3


def free_bytes(service: "Service", mount: str = STORAGE_MOUNT) -> int:
    """Bytes available to unprivileged writers on ``mount``, as ``df`` in the container says."""
    res = exec_in(service, ["df", "-B1", "--output=avail", mount])
    lines = res.output.split()
    if res.exit_code != 0 or len(lines) < 2 or not lines[-1].isdigit():
        raise FaultInjectionError(f"df {mount} in {service.name} failed ({res.exit_code}): {res.output[:300]}",
                                  service=service.name)
    return int(lines[-1])


@dataclass
class StorageFilled:
    """Fill ``mount`` in ``service`` until at most ``leave_bytes`` are free; heal deletes the filler."""

    service: "Service"
    mount: str = STORAGE_MOUNT
    leave_bytes: int = 0
    filler: str = field(default_factory=lambda: f".rc-filler-{uuid.uuid4().hex[:8]}")
    free_after: int | None = None

    @property
    def path(self) -> str:
        return f"{self.mount}/{self.filler}"

    def describe(self) -> str:
        return f"fill {self.mount} in {self.service.name} (leave {self.leave_bytes} bytes)"

    def inject(self) -> None:
        free = free_bytes(self.service, self.mount)
        size = max(0, free - self.leave_bytes)
        if size > MAX_FILL_BYTES:
            raise FaultInjectionError(
                f"{self.mount} in {self.service.name} has {free // 1024**2} MiB free: that is a real disk, not a "
                f"test volume, and renderchaos will not fill more than {MAX_FILL_BYTES // 1024**3} GiB. Mount a "
                "size-limited volume there (compose: a top-level volume with driver_opts {type: tmpfs, device: "
                "tmpfs, o: size=256m})", service=self.service.name)
        path = shlex.quote(self.path)
        # fallocate reserves the blocks at once; dd tops up whatever fallocate's rounding left.
        script = f"fallocate -l {size} {path} || true; "
        if self.leave_bytes == 0:
            script += f"dd if=/dev/zero bs=4096 of={path}.tail 2>/dev/null; true"
        res = exec_in(self.service, ["sh", "-c", script])
        if res.exit_code != 0:
            raise FaultInjectionError(f"filling {self.mount} failed: {res.output[:300]}", service=self.service.name)
        self.free_after = free_bytes(self.service, self.mount)
        if self.free_after > self.leave_bytes + 64 * 1024:
            raise FaultInjectionError(f"{self.mount} still has {self.free_after} bytes free after filling "
                                      f"(wanted <= {self.leave_bytes})", service=self.service.name)

    def heal(self) -> None:
        if not self.service.state().get("Running"):
            return  # the volume goes with the stack; nothing else writes to it now
        path = shlex.quote(self.path)
        res = exec_in(self.service, ["sh", "-c", f"rm -f {path} {path}.tail"])
        if res.exit_code != 0:
            raise FaultHealError(f"cannot delete the filler {self.path}: {res.output[:300]}",
                                 service=self.service.name)
