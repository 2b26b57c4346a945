"""Setup proves its own result: one throwaway container, started the way the stack starts them.

``python -m renderchaos.provisioning.proof`` (the last step of ``scripts/setup.sh``) starts one
container from the built app image with an init process, host networking, a memory limit and a
non-root user, has it bind 127.0.0.1 and answer over TCP, and removes it. A broken engine is then
ONE clear error in setup, naming the missing piece, instead of 40 errors in the suite.
"""

from __future__ import annotations

import argparse
import re
import socket
import sys
import time
from dataclasses import dataclass

from renderchaos.errors import EngineError

#: engine error text -> what is missing and how to get it
KNOWN = (
    (re.compile(r"container-init binary not found|catatonit", re.I),
     "the container init (catatonit) is missing: apt-get install -y catatonit (a Recommends of podman that "
     "--no-install-recommends leaves out)"),
    (re.compile(r"cgroups in hybrid mode|crun", re.I),
     "crun cannot run here: set runtime = \"runc\" in /etc/containers/containers.conf and apt-get install runc"),
    (re.compile(r"ulimit|RLIMIT|setrlimit", re.I),
     "default ulimits exceed the host's: set default_ulimits in /etc/containers/containers.conf "
     "(scripts/setup.sh writes them)"),
    (re.compile(r"memory.*(cgroup|limit)|cgroup.*memory", re.I),
     "the memory cgroup controller is not usable: memory limits (render.oom) cannot be set"),
    (re.compile(r"image not known|No such image|manifest unknown", re.I),
     "the app image is not built: python -m renderchaos.provisioning.engine build"),
    (re.compile(r"newuidmap|uidmap", re.I), "uidmap is missing: apt-get install -y uidmap"),
)


@dataclass
class Proof:
    engine: str
    image: str
    seconds: float


def explain(text: str) -> str:
    for pattern, what in KNOWN:
        if pattern.search(text):
            return what
    return "see the engine's message above"


def prove(timeout: float = 60.0) -> Proof:
    """Start, probe and remove one container like the stack's; raise EngineError naming what is missing."""
    from renderchaos.provisioning.engine import ImageResolver, configure_testcontainers, find_engine
    from renderchaos.provisioning.engine.engine import release_user
    from renderchaos.provisioning.stack.context import StackContext, new_run_id
    from renderchaos.provisioning.stack.reaper import sweep
    from renderchaos.provisioning.stack.services import AppService, Readiness
    from renderchaos.wait import Deadline, Poll

    t0 = time.monotonic()
    run_id = f"proof{new_run_id()}"
    engine = find_engine(user=run_id)
    configure_testcontainers(engine)
    try:
        image = ImageResolver(engine).resolve(["app"])["app"]
        ctx = StackContext(run_id, f"{run_id}-proof", engine=engine)

        class Probe(AppService):
            name = "proof"
            mounts = ()

            def command(self) -> list[str]:
                # bind the stack's address on our port and answer one connection: loopback, host network
                return ["python", "-c", "import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, "
                        f"socket.SO_REUSEADDR, 1); s.bind(('{self.ctx.host}', {self.port})); s.listen(); "
                        "c, _ = s.accept(); c.sendall(b'ok'); c.close()"]

            def container_kwargs(self) -> dict:
                kw = super().container_kwargs()  # init, uid 1000
                kw.update(mem_limit="128m", memswap_limit="128m")
                return kw

            def readiness(self) -> Readiness:
                def answers() -> bool:
                    with socket.create_connection((self.ctx.host, self.port), timeout=1) as s:
                        return s.recv(2) == b"ok"

                return Readiness(f"the probe answering on {self.ctx.host}:{self.port}", answers, Poll(0.1, tolerate=(OSError,)))

        probe = Probe(ctx, image)
        try:
            probe.start()
            probe.wait_ready(Deadline.after(timeout))
        except Exception as exc:  # noqa: BLE001 - mapped to one clear setup error
            text = f"{exc}\n{probe.logs() if probe._tc is not None else ''}"
            raise EngineError(f"setup could not start a container the way the stack will (init, host network, "
                              f"uid 1000, 128 MiB memory limit) with {engine.kind} and {image}:\n{text[:1500]}\n"
                              f"missing piece: {explain(text)}") from exc
        finally:
            probe.remove()
    finally:
        sweep(run_id, engine.cli, host=engine.docker_host)
        release_user(run_id)
    return Proof(engine.kind, image, round(time.monotonic() - t0, 2))


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m renderchaos.provisioning.proof", description=__doc__).parse_args(argv)
    try:
        proof = prove()
    except EngineError as exc:
        print(f"[setup] NOT READY: {exc}", file=sys.stderr)
        return 1
    print(f"[setup] engine proven: {proof.engine} ran {proof.image} with init, host network, uid 1000 and a "
          f"memory limit in {proof.seconds}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
