from __future__ import annotations

from typing import Iterator

import pytest

from renderchaos.stack.context import StackContext
from renderchaos.stack.services import AppService, Readiness, Service


class Sleeper(AppService):
    """An app-image container that only idles: a target for exec, ps and memory faults."""

    name = "sleeper"

    def command(self) -> list[str]:
        return ["sleep", "600"]

    def readiness(self) -> Readiness:
        return Readiness("container running", lambda: self.state().get("Running"))


@pytest.fixture
def started(chaos_context: StackContext) -> Iterator[list[Service]]:
    """Services appended here are removed at the end of the test."""
    services: list[Service] = []
    yield services
    for s in services:
        s.remove()
