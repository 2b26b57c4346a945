"""The fault seam: anything with ``inject()`` and ``heal()``.

A fault that fails to inject raises :class:`FaultInjectionError` (the test fails). ``heal()``
must be idempotent: a ScenarioRun heals every injected fault on the way out, also when the
test failed or was interrupted, even if the scenario already applied the remedy.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Fault(Protocol):
    def describe(self) -> str: ...

    def inject(self) -> None: ...

    def heal(self) -> None: ...
