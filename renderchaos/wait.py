"""Deadlines and polled waits. No bare sleeps: every wait names what it waits for.

A :class:`Deadline` is one monotonic point in time that composite checks share,
so N checks never take N times the timeout.

Two kinds of named durations, never mixed up:

* :class:`Wait`: how long the harness is prepared to poll or wait for something. A slow
  machine needs longer: waits scale with the profile and ``--chaos-timeout-factor``
  (``ScenarioRun.wait(w)``).
* :class:`Limit`: a bar the system under test must meet (a runbook SLO: "fail fast within
  5 s"). A slow machine does not lower the bar: limits are never scaled.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, TypeVar

from renderchaos.errors import WaitTimeout

T = TypeVar("T")


@dataclass(frozen=True)
class Deadline:
    """A point on the monotonic clock."""

    at: float
    timeout: float

    @classmethod
    def after(cls, seconds: float) -> "Deadline":
        return cls(at=time.monotonic() + seconds, timeout=seconds)

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.at

    def elapsed(self) -> float:
        return self.timeout - (self.at - time.monotonic())


@dataclass(frozen=True)
class Wait:
    """How long the harness waits for something; scaled by the run's timeout factor."""

    seconds: float
    what: str = ""

    def scaled(self, factor: float) -> float:
        return self.seconds * factor


@dataclass(frozen=True)
class Limit:
    """A bar the system under test must meet (a runbook limit). Never scaled."""

    seconds: float
    source: str = ""  # where the bar comes from (runbook section, config value)

    def __str__(self) -> str:
        return f"{self.seconds:g}s" + (f" ({self.source})" if self.source else "")


@dataclass(frozen=True)
class Poll:
    """How to poll: interval and the exceptions that mean "not yet"."""

    interval: float = 0.1
    tolerate: tuple[type[BaseException], ...] = field(default=(Exception,))


def wait_for(
    check: Callable[[], T],
    what: str,
    timeout: float | Deadline,
    poll: Poll = Poll(),
    error: type[WaitTimeout] = WaitTimeout,
    **fields: object,
) -> T:
    """Call ``check`` until it returns a truthy value; return that value.

    Exceptions in ``poll.tolerate`` count as "not yet" and are remembered; the
    timeout message names ``what``, the deadline and the last observation.
    """
    deadline = timeout if isinstance(timeout, Deadline) else Deadline.after(timeout)
    last: str = "never checked"
    while True:
        try:
            value = check()
        except poll.tolerate as exc:  # noqa: PERF203 - polling loop
            last = f"{type(exc).__name__}: {exc}"
        else:
            if value:
                return value
            last = f"returned {value!r}"
        remaining = deadline.remaining()
        if remaining <= 0:
            elapsed = deadline.elapsed()
            raise error(
                f"timed out after {elapsed:.1f}s (limit {deadline.timeout:.1f}s) "
                f"waiting for {what}; last observation: {last}",
                what=what,
                timeout=deadline.timeout,
                elapsed=elapsed,
                last=last,
                **fields,
            )
        time.sleep(min(poll.interval, remaining))
