"""Thin fixtures over provider_harness."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from provider_harness import ProviderProcess

from refstack import broken


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[ProviderProcess]:
    p = ProviderProcess(tmp_path)
    try:
        p.wait_ready()
        yield p
    finally:
        p.stop()


@pytest.fixture
def plant(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """``plant("variant")`` switches a broken variant on for this process (the client runs here)."""

    def _plant(*names: str) -> None:
        monkeypatch.setenv("REFSTACK_BROKEN", ",".join(names))
        broken.active.cache_clear()

    yield _plant
    monkeypatch.delenv("REFSTACK_BROKEN", raising=False)
    broken.active.cache_clear()
