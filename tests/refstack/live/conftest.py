"""Thin fixtures over live_harness: every service and process stopped and reaped at teardown."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from live_harness import LiveService, Procs


@pytest.fixture
def live_factory(tmp_path: Path) -> Iterator[object]:
    """``live_factory(broken=None)`` -> a ready LiveService; stopped at teardown."""
    started: list[LiveService] = []

    def make(broken: str | None = None) -> LiveService:
        svc = LiveService(tmp_path, broken=broken)
        started.append(svc)
        svc.wait_ready()
        return svc

    yield make
    for svc in started:
        svc.stop()


@pytest.fixture
def live(live_factory) -> LiveService:
    return live_factory()


@pytest.fixture
def procs_factory(tmp_path: Path) -> Iterator[object]:
    made: list[Procs] = []

    def make(svc: LiveService) -> Procs:
        p = Procs(svc, tmp_path)
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop_all()
