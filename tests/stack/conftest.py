"""Container tests run on every engine in ``RENDERCHAOS_TEST_ENGINES`` (default: podman and docker).

``on_engine`` is one engine, its images and a labelled StackContext on it, shared by the tests of
a session; each engine has its own reaper watching this process (its containers carry the owner
``<run>-<worker>-<engine>``), so a run killed mid-test leaves nothing on either engine. An engine
that cannot be brought up fails its tests (never a skip): set up Docker with
``RENDERCHAOS_ENGINE=docker bash scripts/setup.sh``, or narrow the list.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

import pytest

from renderchaos.provisioning.engine import Engine, ImageResolver, find_engine
from renderchaos.provisioning.engine.engine import STATE_DIR, configure_testcontainers, release_user
from renderchaos.errors import RenderChaosError
from renderchaos.provisioning.stack.context import StackContext
from renderchaos.provisioning.stack.reaper import Reaper, sweep
from renderchaos.provisioning.stack.services import AppService, Readiness, Service

ENGINES = [e.strip() for e in os.environ.get("RENDERCHAOS_TEST_ENGINES", "podman,docker").split(",") if e.strip()]


class Sleeper(AppService):
    """An app-image container that only idles: a target for exec, ps and memory faults."""

    name = "sleeper"

    def command(self) -> list[str]:
        return ["sleep", "600"]

    def readiness(self) -> Readiness:
        return Readiness("container running", lambda: self.state().get("Running"))


@dataclass
class OnEngine:
    engine: Engine
    images: dict[str, str]
    run_id: str
    owner: str
    contexts: int = 0

    @property
    def kind(self) -> str:
        return self.engine.kind

    def context(self) -> StackContext:
        self.contexts += 1
        return StackContext(self.run_id, f"{self.owner}-{self.contexts}", owner=self.owner, engine=self.engine)


@pytest.fixture(scope="session", params=ENGINES)
def on_engine(request: pytest.FixtureRequest, chaos_state: object) -> Iterator[OnEngine]:
    kind = request.param
    configure_testcontainers(None)  # no Ryuk; each StackContext names its own engine
    run_id, owner = chaos_state.run_id, f"{chaos_state.owner}-{kind}"  # type: ignore[attr-defined]
    try:
        engine = find_engine(user=owner, kind=kind)
    except RenderChaosError as exc:
        release_user(owner)
        pytest.fail(f"engine {kind} unavailable: {exc}", pytrace=False)
    reaper = Reaper.start(run_id, engine.cli, owner, host=engine.docker_host)
    try:
        import fcntl

        with open(STATE_DIR / "images.lock", "w") as lock:  # one copy / build at a time across workers
            fcntl.flock(lock, fcntl.LOCK_EX)
            images = ImageResolver(engine).resolve(["postgres", "redis", "rabbitmq", "app"])
        yield OnEngine(engine, images, run_id, owner)
    finally:
        sweep(run_id, engine.cli, owner=owner, host=engine.docker_host)
        reaper.release()
        release_user(owner)


@pytest.fixture
def engine_context(on_engine: OnEngine) -> StackContext:
    return on_engine.context()


@pytest.fixture
def started() -> Iterator[list[Service]]:
    """Services appended here are removed at the end of the test."""
    services: list[Service] = []
    yield services
    for s in services:
        s.remove()
