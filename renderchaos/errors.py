"""One exception tree for the harness.

Every error says what was observed, what was expected and what to do next.
Lower-level errors (docker, redis, psycopg, httpx, celery, the fault proxy) are
mapped to these at the boundary with ``raise ... from exc``. All of them survive
pickling (xdist workers and Celery move them): fields live in ``__dict__`` and
``args`` holds only the message.

    RenderChaosError
    ├── ConfigError              bad option, profile, target file
    ├── EngineError              no container engine / cannot set one up
    │   └── ImageBuildError      a local image recipe failed to build
    ├── ProvisioningError        a service could not be started
    ├── WaitTimeout              a condition did not hold before its deadline
    │   └── ReadinessTimeout     a service did not become ready
    ├── FaultError
    │   ├── FaultInjectionError  a fault could not be injected (fails the test)
    │   └── FaultHealError       a fault could not be healed
    ├── ProxyError               the fault proxy's API refused a call
    ├── TargetError              the system under test answered unusably
    └── ScenarioFailed           (also an AssertionError) the SUT broke the runbook
"""

from __future__ import annotations

from typing import Any


class RenderChaosError(Exception):
    """Root of every error raised by renderchaos."""

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        for key, value in fields.items():
            setattr(self, key, value)

    def __str__(self) -> str:
        return self.message


class ConfigError(RenderChaosError):
    """An option, profile or target file is invalid."""


class EngineError(RenderChaosError):
    """No usable container engine."""


class ImageBuildError(EngineError):
    """A locally built image failed to build."""


class ProvisioningError(RenderChaosError):
    """A service container could not be created or started."""


class WaitTimeout(RenderChaosError):
    """A polled condition did not hold before its deadline.

    Fields: ``what`` (the condition), ``timeout`` (s), ``elapsed`` (s),
    ``last`` (last observed value or error, as text).
    """


class ReadinessTimeout(WaitTimeout, ProvisioningError):
    """A service did not become ready; ``logs`` holds its container log tail."""


class FaultError(RenderChaosError):
    """Base for fault problems."""


class FaultInjectionError(FaultError):
    """A fault could not be injected. Never swallowed: the test fails."""


class FaultHealError(FaultError):
    """A fault could not be healed; the target may need a manual reset."""


class ProxyError(RenderChaosError):
    """The fault proxy answered an error. Fields: ``status``, ``url``."""


class TargetError(RenderChaosError):
    """The system under test answered in a way the harness cannot use."""


class ScenarioFailed(RenderChaosError, AssertionError):
    """The system under test did not behave as the runbook prescribes.

    Fields: ``scenario`` (id), ``runbook`` (file and section), ``expected``,
    ``observed``.
    """
