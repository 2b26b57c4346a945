"""Stacks outside pytest (benchmarks, scripts, a REPL), with the same cleanup guarantees.

    with standalone_run() as run:
        stack = run.stack("bench", workers=1, with_live=False)
        ...

Engine up, testcontainers configured, images resolved (built if needed: ``run.cold_build_s``),
a reaper watching this process; on exit every stack is stopped and the run's label swept.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

from renderchaos.provisioning.engine import Engine, ImageResolver, configure_testcontainers, find_engine
from renderchaos.provisioning.engine.engine import release_user
from renderchaos.provisioning.stack.context import StackContext, new_run_id
from renderchaos.provisioning.stack.reaper import Reaper, sweep
from renderchaos.provisioning.stack.stack import Stack, StackConfig


@dataclass
class StandaloneRun:
    run_id: str
    engine: Engine
    images: dict[str, str]
    cold_build_s: float | None
    stacks: list[Any] = field(default_factory=list)

    def compose(self, path: Any, name: str = "compose", start: bool = True, start_timeout: float = 120.0) -> Any:
        """The platform of a compose file (``x-renderchaos``) as one labelled stack named ``name``;
        started unless ``start=False``."""
        from pathlib import Path

        from renderchaos.provisioning.compose import ComposeStack, load_compose

        resolver = ImageResolver(self.engine)
        stack = ComposeStack(load_compose(Path(path)), StackContext(self.run_id, f"{self.run_id}-{name}", engine=self.engine),
                             start_timeout=start_timeout, recipes=lambda names: resolver.resolve(names),
                             proxy_image=lambda: resolver.resolve(["app"])["app"], cli=self.engine.cli)
        self.stacks.append(stack)
        if start:
            stack.start()
        return stack

    def stack(self, name: str, start: bool = True, **options: Any) -> Stack:
        """A stack of this run named ``name``; started unless ``start=False``."""
        stack = Stack(StackContext(self.run_id, f"{self.run_id}-{name}", engine=self.engine),
                      StackConfig(images=self.images, **options))
        self.stacks.append(stack)
        if start:
            stack.start()
        return stack


@contextmanager
def standalone_run(services: tuple[str, ...] = ("postgres", "redis", "rabbitmq", "app")) -> Iterator[StandaloneRun]:
    run_id = new_run_id()
    engine = find_engine(user=run_id, allow_remote=False)
    configure_testcontainers(engine)
    reaper = Reaper.start(run_id, engine.cli, host=engine.docker_host)
    try:
        resolver = ImageResolver(engine)
        t0 = time.monotonic()
        images = resolver.resolve(list(services))
        run = StandaloneRun(run_id, engine, images, time.monotonic() - t0 if resolver.built else None)
        try:
            yield run
        finally:
            for stack in run.stacks:
                stack.stop()
    finally:
        sweep(run_id, engine.cli, host=engine.docker_host)
        reaper.release()
        release_user(run_id)
