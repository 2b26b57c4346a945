"""Locust-side helpers shared by the locustfiles (``locustfile.py``, ``capacity.py``): build the
adapter from the runner's :class:`~renderchaos.load.platform.PlatformSpec`, open an account,
and report one adapter call to Locust's statistics.

Imports Locust (gevent): only the locustfiles import this module, never the pytest process.
"""

from __future__ import annotations

import logging
from typing import Any

from renderchaos.errors import ConfigError, RenderChaosError
from renderchaos.load.platform import ENV, PlatformSpec
from renderchaos.platforms.base import Account, Platform
from renderchaos.wait import Poll, wait_for

log = logging.getLogger("renderchaos.load")

#: an account must be open within this long (the target may be mid-fault when a user spawns)
ACCOUNT_WAIT_S = 60.0


class LoadFailure(Exception):
    """What Locust lists in its failures table: the operation's answer was not what it expects."""


def add_platform_options(group: Any) -> None:
    group.add_argument("--rc-adapter", default="refstack", env_var="RENDERCHAOS_ADAPTER",
                       help="platform adapter (registered name or module:Class) when RENDERCHAOS_PLATFORM is unset; "
                            "with --host and --rc-admin-token")
    group.add_argument("--rc-admin-token", default="", env_var="RENDERCHAOS_ADMIN_TOKEN",
                       help="admin token of the target, when RENDERCHAOS_PLATFORM is unset")


def platform_spec(options: Any, host: str | None) -> PlatformSpec:
    """The runner's spec (``$RENDERCHAOS_PLATFORM``, JSON), or one from ``--rc-adapter``,
    ``--host`` and ``--rc-admin-token`` for a standalone ``locust -f`` run."""
    import os

    raw = os.environ.get(ENV, "")
    if raw:
        return PlatformSpec.from_json(raw)
    if not host:
        raise ConfigError(f"no platform to drive: set {ENV} (JSON, as renderchaos.load.runner writes it) or pass "
                          "--host URL with --rc-adapter NAME and --rc-admin-token TOKEN")
    return PlatformSpec(adapter=options.rc_adapter, api_url=host.rstrip("/"),
                        admin_token=options.rc_admin_token or None)


def open_account(platform: Platform, name: str, credits: int | None) -> Account:
    """One account per simulated client, through the adapter (not recorded as load); retried
    while the platform cannot open one, within :data:`ACCOUNT_WAIT_S`."""
    return wait_for(lambda: platform.open_account(name=name, credits=credits),
                    what=f"{platform.name} to open an account for a Locust user", timeout=ACCOUNT_WAIT_S,
                    poll=Poll(1.0, tolerate=(RenderChaosError, OSError, _http_errors())))


def fire(environment: Any, operation: str, elapsed_s: float, failure: str | None, length: int = 0) -> None:
    """Report one adapter call to Locust (request type and name: the operation)."""
    environment.events.request.fire(request_type=operation, name=operation, response_time=elapsed_s * 1000.0,
                                    response_length=length, response=None, context={},
                                    exception=LoadFailure(failure) if failure is not None else None)


def _http_errors() -> type[BaseException]:
    try:
        import httpx
    except ImportError:  # an adapter without httpx
        return OSError
    return httpx.HTTPError
