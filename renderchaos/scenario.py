"""Scenarios as plain data, and the run that drives one through its phases.

A :class:`Scenario` is one runbook case (SCENARIOS.md): id, runbook reference, tier marker,
required capabilities, fault, symptom, remedy, deadlines, and the broken variants it must
catch. A :class:`ScenarioRun` drives it:

    steady state before -> inject -> detect (time to detect) -> remedy -> steady state after
    (time to recover)

Each phase has one monotonic deadline and is recorded in the run journal. Injected faults
are always healed on the way out. The invariants at the top of SCENARIOS.md are checked in
the steady state after: no accepted job lost, stuck or duplicated; completed jobs have a
valid output; credits exactly once; no orphan ffmpeg; health back; a canary render completes.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal, TypeVar

import pytest

from renderchaos.config import Profile
from renderchaos.errors import ScenarioFailed, WaitTimeout
from renderchaos.faults.base import Fault
from renderchaos.probes.api import Admin, RenderApi, User, render_body
from renderchaos.probes.ledger import JobLedger, LedgerReport
from renderchaos.wait import Deadline, Poll, wait_for

if TYPE_CHECKING:
    from renderchaos.target import Target

T = TypeVar("T")

RUNBOOKS = {
    "R": "render-platform-troubleshooting.zh.txt",
    "A": "ai-service-troubleshooting.zh.txt",
    "P": "peertube-ffmpeg-pileup.zh.txt",
    "V": "avideo-encoder-blacklist.zh.txt",
}


@dataclass(frozen=True)
class Runbook:
    key: Literal["R", "A", "P", "V"]
    section: str  # e.g. "§一.3 渲染超时"

    @property
    def file(self) -> str:
        return RUNBOOKS[self.key]

    def __str__(self) -> str:
        return f"{self.key} {self.section} ({self.file})"


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    runbook: Runbook
    tier: Literal["gate", "resilience", "load"]
    fault: str
    symptom: str
    remedy: str
    needs: tuple[str, ...] = ("render_api",)
    detect_s: float = 20.0  # deadline for the symptom to show
    recover_s: float = 60.0  # deadline for steady state after the remedy
    catches: tuple[str, ...] = ()  # refstack.broken variants this scenario must fail on
    canary: bool = True  # submit a canary render in the steady state after

    def marks(self) -> list[Any]:
        marks = [getattr(pytest.mark, self.tier), pytest.mark.scenario(self.id), pytest.mark.needs(*self.needs)]
        if self.tier in ("resilience", "load"):
            marks.append(pytest.mark.slow)
        return marks

    def param(self) -> Any:
        return pytest.param(self, id=self.id, marks=self.marks())


def runs(*scenarios: Scenario) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a suite test: it runs these scenarios, with their ids and markers."""
    return pytest.mark.parametrize("scenario", [s.param() for s in scenarios])


# ---------------------------------------------------------------------------------------
@dataclass
class PhaseRecord:
    name: str
    started: float  # seconds since the run started (monotonic)
    ended: float | None = None
    ok: bool | None = None
    note: str = ""

    @property
    def duration(self) -> float | None:
        return None if self.ended is None else round(self.ended - self.started, 3)


@dataclass
class Invariants:
    accepted: int = 0
    lost: int = 0
    stuck: int = 0
    duplicated: int = 0
    recovered: int = 0
    credit_errors: int = 0
    output_errors: int = 0
    orphan_ffmpeg: int | None = None  # None: not checked (target without the containers capability)
    health_ok: bool | None = None
    canary_ok: bool | None = None


@dataclass
class Journal:
    scenario: str
    runbook: str
    t0: float = field(default_factory=time.monotonic)
    phases: list[PhaseRecord] = field(default_factory=list)
    time_to_detect_s: float | None = None
    time_to_recover_s: float | None = None
    invariants: Invariants = field(default_factory=Invariants)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # scenario-specific figures (JSON-able)

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 3)

    def to_dict(self) -> dict[str, Any]:
        out = {"id": self.scenario, "runbook": self.runbook, "time_to_detect_s": self.time_to_detect_s,
               "time_to_recover_s": self.time_to_recover_s, **asdict(self.invariants),
               "phases": [{**asdict(p), "duration": p.duration} for p in self.phases], "notes": self.notes,
               "extra": self.extra}
        return out


# ---------------------------------------------------------------------------------------
class ScenarioRun:
    """Drives one scenario against a target; see the module docstring."""

    def __init__(self, scenario: Scenario, target: "Target", profile: Profile, tmp_dir: "Path | None" = None) -> None:
        self.scenario = scenario
        self.target = target
        self.profile = profile
        self.timeouts = profile.timeouts
        self.journal = Journal(scenario.id, str(scenario.runbook))
        self.admin = Admin(target.api_url, target.admin_token, timeout=self.timeouts.connect)
        self.tmp_dir = tmp_dir  # inside the run's temp root: swept by the reaper whatever happens
        self.ledger = JobLedger(self.admin, tmp_dir)
        self._faults: list[Fault] = []
        self._clients: list[RenderApi] = []
        self._user: User | None = None
        self._api: RenderApi | None = None
        self._inject_at: float | None = None
        self._remedy_at: float | None = None
        self.finished = False

    # -- accounts --------------------------------------------------------------------------
    @property
    def user(self) -> User:
        if self._user is None:
            self._user = self.admin.create_user(credits=10_000, name=f"scenario {self.scenario.id}")
        return self._user

    @property
    def api(self) -> RenderApi:
        if self._api is None:
            self._api = self.client(self.user.api_key)
        return self._api

    def client(self, api_key: str | None) -> RenderApi:
        c = RenderApi(self.target.api_url, api_key, timeout=self.timeouts.connect)
        self._clients.append(c)
        return c

    def submit(self, api: RenderApi | None = None, **body: Any) -> Any:
        """Submit a render and record it in the ledger if accepted. Returns the response."""
        api = api or self.api
        req = render_body(**body)
        resp = api.submit(req)
        d = req["data"]
        self.ledger.accept(resp, api, (float(d["duration"]), int(d["width"]), int(d["height"])))
        return resp

    # -- failing ---------------------------------------------------------------------------
    def fail(self, expected: str, observed: str) -> None:
        sc = self.scenario
        raise ScenarioFailed(
            f"[{sc.id}] {sc.title}\n  runbook: {sc.runbook}\n  expected: {expected}\n  observed: {observed}",
            scenario=sc.id, runbook=str(sc.runbook), expected=expected, observed=observed)

    def expect(self, condition: bool, expected: str, observed: str | Callable[[], str]) -> None:
        if not condition:
            self.fail(expected, observed() if callable(observed) else observed)

    # -- phases ----------------------------------------------------------------------------
    @contextmanager
    def phase(self, name: str, note: str = "") -> Iterator[PhaseRecord]:
        rec = PhaseRecord(name, self.journal.now(), note=note)
        self.journal.phases.append(rec)
        try:
            yield rec
        except BaseException:
            rec.ok = False
            raise
        else:
            rec.ok = True
        finally:
            rec.ended = self.journal.now()

    def steady_state_before(self) -> None:
        """The hypothesis holds before we touch anything: healthy, and a canary completes."""
        with self.phase("steady_state_before"):
            self._wait_healthy(Deadline.after(self.timeouts.recovery), "before the fault")

    def inject(self, fault: Fault) -> Fault:
        """Inject ``fault`` (healed automatically at the end, whatever happens)."""
        with self.phase("inject", fault.describe()):
            if self._inject_at is None:
                self._inject_at = time.monotonic()
            self._faults.append(fault)
            fault.inject()
        return fault

    def mark_injected(self, what: str) -> None:
        """The fault is something the scenario does itself (a too-long render, a burst): time
        to detect counts from here. Nothing to heal."""
        with self.phase("inject", what):
            self._inject_at = time.monotonic()

    def detect(self, check: Callable[[], T], what: str, timeout: float | None = None,
               poll: Poll = Poll(0.1)) -> T:
        """Wait for the runbook's symptom; records time to detect (from the first injection)."""
        with self.phase("detect", what):
            try:
                value = wait_for(check, what=what, timeout=timeout or self.scenario.detect_s, poll=poll)
            except WaitTimeout as exc:
                self.fail(f"symptom within {exc.timeout:.0f}s: {what}", f"not seen; last: {exc.last}")
            start = self._inject_at or self.journal.t0
            self.journal.time_to_detect_s = round(time.monotonic() - start, 3)
            return value

    def remedy(self, action: Callable[[], Any], what: str) -> Any:
        """Apply the runbook's prescribed remedy; time to recover counts from here."""
        with self.phase("remedy", what):
            self._remedy_at = time.monotonic()
            return action()

    def heal(self, fault: Fault, what: str | None = None) -> None:
        """The remedy is to remove the fault (start the DB, unblock the IP...)."""
        self.remedy(fault.heal, what or f"heal: {fault.describe()}")

    def recovered(self, check: Callable[[], T], what: str, timeout: float | None = None,
                  poll: Poll = Poll(0.2)) -> T:
        """Wait for a scenario-specific recovery condition after the remedy."""
        with self.phase("recover", what):
            try:
                return wait_for(check, what=what, timeout=timeout or self.scenario.recover_s, poll=poll)
            except WaitTimeout as exc:
                self.fail(f"recovery within {exc.timeout:.0f}s: {what}", f"not recovered; last: {exc.last}")
                raise  # unreachable

    def steady_state_after(self, check_outputs: bool = True) -> Invariants:
        """The invariants of SCENARIOS.md; fails the scenario with every violation listed."""
        inv = self.journal.invariants
        deadline = Deadline.after(self.timeouts.job_completion)
        with self.phase("steady_state_after"):
            self._heal_all()
            self._wait_healthy(Deadline.after(self.timeouts.recovery), "after the remedy")
            inv.health_ok = True
            report = self.ledger.audit(deadline, check_outputs=check_outputs)
            self._record(report)
            inv.orphan_ffmpeg = self._orphans()
            problems = report.problems()
            if inv.orphan_ffmpeg:
                problems.append(f"orphan ffmpeg processes: {inv.orphan_ffmpeg}")
            if self.scenario.canary:
                canary = self._canary()
                inv.canary_ok = canary is None
                if canary:
                    problems.append(canary)
            start = self._remedy_at or self._inject_at
            if start is not None:
                self.journal.time_to_recover_s = round(time.monotonic() - start, 3)
        self.finished = True
        if problems:
            self.fail("every accepted job terminal and accounted for, credits exactly once, valid outputs, "
                      "no orphan ffmpeg, a canary render completes",
                      "; ".join(problems))
        return inv

    # -- internals -------------------------------------------------------------------------
    def _heal_all(self) -> list[str]:
        errors = []
        for fault in reversed(self._faults):
            try:
                fault.heal()
            except Exception as exc:  # noqa: BLE001 - every fault gets its heal; errors reported
                errors.append(f"{fault.describe()}: {exc}")
        self._faults.clear()
        return errors

    def _wait_healthy(self, deadline: Deadline, when: str) -> None:
        api = self.client(None)
        try:
            wait_for(lambda: api.health().status_code == 200, what=f"/health 200 {when}", timeout=deadline,
                     poll=Poll(0.2, tolerate=(Exception,)))
        except WaitTimeout as exc:
            self.fail(f"/health healthy {when} within {deadline.timeout:.0f}s", f"{exc.last}")

    def _record(self, report: LedgerReport) -> None:
        inv = self.journal.invariants
        inv.accepted, inv.lost, inv.stuck = report.accepted, len(report.lost), len(report.stuck)
        inv.duplicated, inv.credit_errors = len(report.duplicated), len(report.credit_errors)
        inv.output_errors = len(report.output_errors)
        inv.recovered = report.by_status.get("completed", 0)

    def _orphans(self) -> int | None:
        stack = self.target.stack
        if stack is None or not self.target.has("containers"):
            self.journal.notes.append("orphan ffmpeg not checked: target has no 'containers' capability")
            return None
        from renderchaos.faults.container import orphan_ffmpeg

        def count() -> int:
            return sum(len(orphan_ffmpeg(s)) for s in [stack.api, *stack.workers] if s.state().get("Running"))

        # Nothing is running once every job is terminal; give exiting processes a moment.
        try:
            wait_for(lambda: count() == 0, what="no ffmpeg left in the API and worker containers",
                     timeout=5.0, poll=Poll(0.2))
        except WaitTimeout:
            return count()
        return 0

    def _canary(self) -> str | None:
        resp = self.submit(title="canary", duration=1.0)
        if resp.status_code != 202:
            return f"canary render refused: {resp.status_code} {resp.text[:200]}"
        job_id = resp.json()["id"]
        try:
            job = self.ledger.wait_terminal(job_id, self.timeouts.job_completion, "the canary render to finish")
        except WaitTimeout as exc:
            return f"canary render did not finish: {exc.last}"
        if job["status"] != "completed":
            return f"canary render {job['status']}: {job.get('error_code')} {job.get('error_message')}"
        return None

    def close(self) -> list[str]:
        errors = self._heal_all()
        for c in self._clients:
            c.close()
        self.admin.close()
        return errors
