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
    database_dsn: str | None = None  # libpq DSN, straight to Postgres (not through the fault proxy)
    redis_url: str | None = None
    broker_url: str | None = None

    def database_url(self) -> str:
        """The SQLAlchemy URL of the stack's database, for an in-process API or worker."""
        if not self.database_dsn:
            pytest.fail("this test runs API / worker code in-process against the stack's database: set "
                        "REFSTACK_TEST_DATABASE_DSN (libpq DSN) next to REFSTACK_TEST_API_URL", pytrace=False)
        return "postgresql+psycopg://" + self.database_dsn.split("://", 1)[1].split("?", 1)[0]

    def require(self, what: str) -> str:
        value = getattr(self, what)
        if not value:
            pytest.fail(f"this test needs the stack's {what}: set REFSTACK_TEST_{what.upper()} next to "
                        "REFSTACK_TEST_API_URL", pytrace=False)
        return value


@pytest.fixture(scope="session")
def live_stack(request: pytest.FixtureRequest) -> LiveStack:
    """The reference stack the integration tests run against.

    A stack that cannot be had is a FAILURE, never a skip: a CI machine without containers
    must not report the integration layer as skipped-and-green.
    """
    url = os.environ.get("REFSTACK_TEST_API_URL")
    if url:
        return LiveStack(url.rstrip("/"), os.environ.get("REFSTACK_TEST_ADMIN_TOKEN", ""),
                         os.environ.get("REFSTACK_TEST_DATABASE_DSN"), os.environ.get("REFSTACK_TEST_REDIS_URL"),
                         os.environ.get("REFSTACK_TEST_BROKER_URL"))
    try:
        stack = request.getfixturevalue("chaos_stack")
    except pytest.FixtureLookupError:
        pytest.fail("integration: no chaos_stack fixture (renderchaos plugin not loaded) and "
                    "REFSTACK_TEST_API_URL not set", pytrace=False)
    return live_stack_of(stack)


def live_stack_of(stack) -> LiveStack:
    """A :class:`LiveStack` view of a harness ``Stack`` (direct ports, not the fault proxy's)."""
    return LiveStack(stack.api_url.rstrip("/"), stack.admin_token, stack.postgres.dsn(), stack.redis.url(),
                     stack.rabbitmq.url())
