"""Shared fixtures of the reference-stack tests (API, workers, database).

Unit tests need no service. Integration tests (``@pytest.mark.integration``)
run against the harness's ``chaos_stack`` or, for development, against a
stack you started yourself: ``REFSTACK_TEST_API_URL`` + ``REFSTACK_TEST_ADMIN_TOKEN``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

from refstack import broken


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "integration: needs a running reference stack (chaos_stack)")


@pytest.fixture
def planted(monkeypatch: pytest.MonkeyPatch):
    """``planted("api_x")`` switches a broken variant on for this test only."""

    def switch(*names: str) -> None:
        monkeypatch.setenv("REFSTACK_BROKEN", ",".join(names))
        broken.active.cache_clear()

    yield switch
    monkeypatch.delenv("REFSTACK_BROKEN", raising=False)
    broken.active.cache_clear()


@dataclass(frozen=True)
class LiveStack:
    api_url: str
    admin_token: str
    database_dsn: str | None = None


@pytest.fixture(scope="session")
def live_stack(request: pytest.FixtureRequest) -> LiveStack:
    url = os.environ.get("REFSTACK_TEST_API_URL")
    if url:
        return LiveStack(url.rstrip("/"), os.environ.get("REFSTACK_TEST_ADMIN_TOKEN", ""),
                         os.environ.get("REFSTACK_TEST_DATABASE_DSN"))
    try:
        stack = request.getfixturevalue("chaos_stack")
    except pytest.FixtureLookupError:
        pytest.skip("integration: no chaos_stack fixture (renderchaos plugin not loaded) and "
                    "REFSTACK_TEST_API_URL not set")
    except pytest.fail.Exception as exc:  # the harness could not start containers here
        pytest.skip(f"integration: chaos_stack unavailable: {exc}")
    return LiveStack(stack.api_url.rstrip("/"), stack.admin_token, getattr(stack, "database_dsn", None))
