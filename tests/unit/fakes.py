"""In-memory stand-ins behind the real seams, for the fast unit layer (no containers).

``FakePlatform`` is a Platform adapter whose jobs live in a dict and advance when observed;
``FakeFault`` records inject/heal and can be told to fail either.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, ClassVar

from renderchaos.platforms.base import (
    Account, Answer, ApiError, ErrorKind, Feature, Health, Job, JobState, Platform, PlatformEndpoint, RenderRequest,
)


class FakePlatform(Platform):
    name: ClassVar[str] = "fake"
    features: ClassVar[frozenset[Feature]] = frozenset({Feature.ACCOUNTS, Feature.CREDITS, Feature.STATS})

    def __init__(self, endpoint: PlatformEndpoint | None = None, timeout: float = 1.0) -> None:
        super().__init__(endpoint or PlatformEndpoint(api_url="http://127.0.0.1:9"), timeout)
        self.jobs: dict[str, list[JobState]] = {}  # job id -> the states it will go through
        self.seen: dict[str, int] = {}
        self.charges: dict[str, tuple[int, int]] = {}
        self.balances: dict[str, int] = {}
        self.ledgers: dict[str, int] = {}
        self.healthy = True
        self.lose: set[str] = set()
        self.next_states: list[JobState] = [JobState.PENDING, JobState.RUNNING, JobState.COMPLETED]
        self._ids = itertools.count(1)

    def health(self) -> Health:
        return Health(self.healthy, 200 if self.healthy else 503, () if self.healthy else ("database",), 0.001)

    def open_account(self, name: str = "renderchaos", credits: int | None = None) -> Account:
        acc = Account(f"acc-{next(self._ids)}", "key", credits)
        self.balances[acc.id] = self.ledgers[acc.id] = credits or 0
        return acc

    def submit(self, account: Account, request: RenderRequest) -> Answer[str]:
        if request.title == "refuse":
            return Answer(400, 0.001, error=ApiError(ErrorKind.INVALID_PARAMETER, 400, "invalid_parameter", "no",
                                                     field="title"))
        job_id = f"job-{next(self._ids)}"
        self.jobs[job_id] = list(self.next_states)
        self.seen[job_id] = 0
        self.charges[job_id] = (1, 0)
        return Answer(202, 0.001, value=job_id)

    def _current(self, job_id: str) -> Job | None:
        if job_id in self.lose or job_id not in self.jobs:
            return None
        states = self.jobs[job_id]
        i = min(self.seen[job_id], len(states) - 1)
        self.seen[job_id] += 1
        return Job(job_id, states[i])

    def job(self, account: Account, job_id: str) -> Answer[Job]:
        job = self._current(job_id)
        return Answer(200, 0.001, value=job) if job else Answer(404, 0.001, error=ApiError(ErrorKind.NOT_FOUND, 404))

    def list_jobs(self, account: Account, limit: int = 20) -> Answer[list[Job]]:
        return Answer(200, 0.001, value=[])

    def observe_job(self, job_id: str) -> Job | None:
        return self._current(job_id)

    def job_counts(self) -> dict[JobState, int] | None:
        return {JobState.PENDING: len(self.jobs)}

    def job_charges(self, job_id: str) -> tuple[int, int] | None:
        return self.charges.get(job_id, (0, 0))

    def balance(self, account: Account) -> int | None:
        return self.balances[account.id]

    def ledger_total(self, account: Account) -> int | None:
        return self.ledgers[account.id]


@dataclass
class FakeFault:
    label: str = "fake fault"
    fail_inject: bool = False
    fail_heal: int = 0  # heal raises this many times
    calls: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return self.label

    def inject(self) -> None:
        self.calls.append("inject")
        if self.fail_inject:
            from renderchaos.errors import FaultInjectionError

            raise FaultInjectionError(f"{self.label}: could not inject")

    def heal(self) -> None:
        self.calls.append("heal")
        if self.fail_heal:
            self.fail_heal -= 1
            from renderchaos.errors import FaultHealError

            raise FaultHealError(f"{self.label}: still active")


def spec_for(fault: FakeFault) -> Any:
    """A fault spec that binds to ``fault`` whatever the target."""

    @dataclass(frozen=True)
    class Spec:
        def needs(self) -> tuple[str, ...]:
            return ()

        def describe(self) -> str:
            return fault.label

        def bind(self, target: Any) -> FakeFault:
            return fault

    return Spec()
