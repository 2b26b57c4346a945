"""Scenarios as plain data, and the run that drives one through its phases.

A :class:`Scenario` is one runbook case (SCENARIOS.md): id, registered runbook section, tier
marker, its faults as typed specs (:mod:`renderchaos.faults.spec`), symptom, remedy, waits, what
the target must offer, and the broken variants of the reference stack it must catch. A
:class:`ScenarioRun` drives it against a :class:`~renderchaos.target.Target`:

    steady state before -> inject -> [detect] -> [remedy] -> [recover] -> steady state after

Detect, remedy and recover are optional: a phase that was not measured is recorded as not
measured (``null``), never filled in. Each phase has one monotonic deadline and is recorded in
the run journal, with every fault's injected-to-healed window and what the probes saw meanwhile
(request latency and status, jobs per state; sampled in the background). Injected faults are
healed on the way out whatever happens; a fault that cannot be healed fails the scenario with
:class:`FaultHealError` and is counted in ``faults_active_at_end``. The invariants at the top of
SCENARIOS.md are checked in the steady state after: no accepted job lost, stuck or duplicated;
completed jobs have a valid output; credits exactly once (charges and the money); no orphan
ffmpeg; health back; a canary render completes.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal, TypeVar

import pytest

from renderchaos.config import Profile
from renderchaos.errors import FaultHealError, ScenarioFailed, WaitTimeout
from renderchaos.faults.base import Fault
from renderchaos.faults.spec import FaultSpec
from renderchaos.platforms.base import Account, Answer, Feature, Job, JobState, RenderRequest
from renderchaos.probes.ledger import JobLedger, LedgerReport
from renderchaos.wait import Deadline, Poll, Wait, wait_for

if TYPE_CHECKING:
    from renderchaos.platforms.base import Platform
    from renderchaos.target import Target

T = TypeVar("T")


@dataclass(frozen=True)
class Runbook:
    """A reference to a section of a registered runbook (:mod:`renderchaos.runbooks`)."""

    key: str  # the runbook's registered key ("R", "A", or a team's own)
    section: str  # e.g. "§一.3 渲染超时 原因4: 死锁"; resolves to the longest registered section id

    @property
    def file(self) -> str:
        from renderchaos.runbooks import default_registry

        try:
            return default_registry().get(self.key).file
        except Exception:  # noqa: BLE001 - unregistered: validated at collection, shown as is here
            return "?"

    def __str__(self) -> str:
        return f"{self.key} {self.section} ({self.file})"


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    runbook: Runbook
    tier: Literal["gate", "resilience", "load"]
    symptom: str
    remedy: str
    faults: tuple[FaultSpec, ...] = ()  # what the scenario injects, bound to the target at run time
    needs: tuple[str, ...] = ()  # what else the target must offer (platform features, roles)
    detect: Wait | None = None  # how long to wait for the symptom (default: the profile's detection)
    recover: Wait | None = None  # how long to wait for recovery (default: the profile's recovery)
    catches: tuple[str, ...] = ()  # refstack.broken variants this scenario must fail on
    canary: bool = True  # submit a canary render in the steady state after

    @property
    def fault(self) -> str:
        """What is injected, in words (from the specs)."""
        return "; ".join(f.describe() for f in self.faults)

    def requirements(self) -> tuple[str, ...]:
        """Everything the target must offer: ``needs`` plus what each fault spec needs."""
        out: list[str] = [n.value if isinstance(n, Feature) else n for n in self.needs]
        for f in self.faults:
            out += [n for n in f.needs() if n not in out]
        return tuple(dict.fromkeys(out))

    def marks(self) -> list[Any]:
        marks = [getattr(pytest.mark, self.tier), pytest.mark.scenario(self.id),
                 pytest.mark.needs(*self.requirements())]
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
class FaultRecord:
    """One injected fault: when it started and when it was undone (run-relative seconds)."""

    description: str
    injected_at: float
    healed_at: float | None = None
    heal_error: str | None = None


@dataclass
class Invariants:
    accepted: int = 0
    lost: int = 0
    stuck: int = 0
    duplicated: int = 0
    recovered: int = 0
    credit_errors: int = 0
    output_errors: int = 0
    orphan_ffmpeg: int | None = None  # None: not checked (target without containers of api/worker)
    health_ok: bool | None = None
    canary_ok: bool | None = None


@dataclass
class Journal:
    scenario: str
    runbook: str
    title: str = ""
    runbook_key: str = ""
    runbook_section: str = ""
    platform: str = ""
    t0: float = field(default_factory=time.monotonic)
    started_at: float = field(default_factory=time.time)  # wall clock of t0 (reports, traces)
    phases: list[PhaseRecord] = field(default_factory=list)
    faults: list[FaultRecord] = field(default_factory=list)
    time_to_detect_s: float | None = None
    time_to_recover_s: float | None = None
    limits: dict[str, float | None] = field(default_factory=dict)  # detect_s / recover_s deadlines
    invariants: Invariants = field(default_factory=Invariants)
    ledger: dict[str, Any] | None = None
    samples: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # scenario-specific figures (JSON-able)

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 3)

    @property
    def faults_active(self) -> int:
        return sum(1 for f in self.faults if f.healed_at is None)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.scenario, "title": self.title, "runbook": self.runbook, "runbook_key": self.runbook_key,
                "runbook_section": self.runbook_section, "platform": self.platform,
                "started_at": round(self.started_at, 3),
                "time_to_detect_s": self.time_to_detect_s, "time_to_recover_s": self.time_to_recover_s,
                "limits": self.limits, **asdict(self.invariants), "ledger": self.ledger,
                "phases": [{**asdict(p), "duration": p.duration} for p in self.phases],
                "faults": [asdict(f) for f in self.faults], "faults_active_at_end": self.faults_active,
                "samples": self.samples, "notes": self.notes, "extra": self.extra}


# ---------------------------------------------------------------------------------------
class Sampler:
    """What the probes see while a scenario runs: every ``interval`` s, one health request
    (latency, status) and, where the platform can say, jobs per state. A background thread from
    the steady state before to the end of the steady state after; each sample is bounded by
    the platform's own timeouts."""

    def __init__(self, platform: "Platform", journal: Journal, interval: float = 0.5) -> None:
        self.platform = platform
        self.journal = journal
        self.interval = interval
        self.latency: list[list[Any]] = []
        self.jobs: list[list[Any]] = []
        self.depth: list[list[Any]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._counts = platform.has(Feature.STATS)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=f"sampler {self.journal.scenario}", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            t = self.journal.now()
            h = self.platform.health()
            self.latency.append([t, round(h.elapsed * 1000, 1), h.status])
            if self._counts:
                try:
                    counts = self.platform.job_counts() or {}
                except Exception:  # noqa: BLE001 - a sample the platform could not answer: a gap
                    counts = None
                if counts is not None:
                    self.jobs.append([t, {s.value: n for s, n in counts.items()}])
                    self.depth.append([t, counts.get(JobState.PENDING, 0)])
            # the sampling interval is the probe's pace, not a wait for a condition
            self._stop.wait(self.interval)

    def stop(self) -> dict[str, Any] | None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.platform.timeout * 2 + 1)
        if not self.latency:
            return None
        series: dict[str, Any] = {"latency": self.latency}
        if self.jobs:
            series["jobs"] = self.jobs
            series["queue_depth"] = self.depth
        return {"interval_s": self.interval, "series": series}


# ---------------------------------------------------------------------------------------
class ScenarioRun:
    """Drives one scenario against a target; see the module docstring."""

    def __init__(self, scenario: Scenario, target: "Target", profile: Profile, tmp_dir: "Path | None" = None,
                 sample: bool = True) -> None:
        self.scenario = scenario
        self.target = target
        self.platform = target.platform
        self.profile = profile
        self.timeouts = profile.timeouts
        rb = scenario.runbook
        self.journal = Journal(scenario.id, str(rb), title=scenario.title, runbook_key=rb.key,
                               runbook_section=rb.section, platform=self.platform.name)
        self.journal.limits = {"detect_s": round(self.detect_wait, 1), "recover_s": round(self.recover_wait, 1)}
        self.tmp_dir = tmp_dir  # inside the run's temp root: swept by the reaper whatever happens
        self.ledger = JobLedger(self.platform, tmp_dir)
        self._faults: list[tuple[Fault, FaultRecord]] = []
        self._account: Account | None = None
        self._inject_at: float | None = None
        self._remedy_at: float | None = None
        self._sampler = Sampler(self.platform, self.journal) if sample else None
        self.finished = False

    # -- waits -------------------------------------------------------------------------------
    def wait(self, w: Wait | float) -> float:
        """Seconds for a named :class:`Wait` on this run (scaled by the timeout factor)."""
        return self.profile.wait(w)

    @property
    def detect_wait(self) -> float:
        return self.wait(self.scenario.detect) if self.scenario.detect else self.timeouts.detection

    @property
    def recover_wait(self) -> float:
        return self.wait(self.scenario.recover) if self.scenario.recover else self.timeouts.recovery

    # -- accounts and jobs -----------------------------------------------------------------
    @property
    def account(self) -> Account:
        """The scenario's own tenant (opened on first use)."""
        if self._account is None:
            self._account = self.open_account(f"scenario {self.scenario.id}", credits=10_000)
        return self._account

    def open_account(self, name: str, credits: int | None = 10_000) -> Account:
        """Another tenant (or the platform's one identity); its money is audited at the end."""
        return self.ledger.watch_account(self.platform.open_account(name=name, credits=credits))

    def submit(self, request: RenderRequest | None = None, account: Account | None = None, **fields: Any
               ) -> Answer[str]:
        """Submit a render and record it in the ledger if accepted. ``fields`` build a
        :class:`RenderRequest` when none is given."""
        req = request or RenderRequest(**fields)
        acc = account or self.account
        answer = self.platform.submit(acc, req)
        self.ledger.accept(answer, acc, self.platform.expected_output(req, answer.value))
        return answer

    def accepted(self, answer: Answer[str], what: str) -> str:
        """The job id of an accepted submit, or the scenario fails saying what came back."""
        self.expect(answer.ok and bool(answer.value), f"{what}: accepted", str(answer))
        assert answer.value is not None
        return answer.value

    def job(self, job_id: str) -> Job | None:
        """The platform's current view of a job (``None``: it does not know the job)."""
        return self.platform.observe_job(job_id)

    def terminal(self, *ids: str) -> "dict[str, Job] | Unfinished":
        """Every job in ``ids`` if all are terminal, else a falsy :class:`Unfinished` naming the
        others and their states (a check for detect/recovered whose timeout says what was left)."""
        jobs = {i: self.job(i) for i in ids}
        if all(j is not None and j.terminal for j in jobs.values()):
            self.ledger.final.update({i: j for i, j in jobs.items() if j is not None})
            return jobs  # type: ignore[return-value]
        return Unfinished({i: (j.brief() if j else "unknown to the platform") for i, j in jobs.items()
                           if j is None or not j.terminal})

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
        """The hypothesis holds before we touch anything: the platform answers healthy."""
        if self._sampler is not None:
            self._sampler.start()
        with self.phase("steady_state_before"):
            self._wait_healthy(Deadline.after(self.timeouts.recovery), "before the fault")
            self._wait_quiet(Deadline.after(self.timeouts.job_completion))

    def inject(self, fault: Fault | FaultSpec) -> Any:
        """Inject ``fault`` (a concrete fault, or a spec bound to this target); it is healed
        automatically at the end, whatever happens. Returns the concrete fault."""
        if not hasattr(fault, "inject") and hasattr(fault, "bind"):
            fault = fault.bind(self.target)  # type: ignore[union-attr]
        assert not isinstance(fault, FaultSpec) or hasattr(fault, "inject")
        with self.phase("inject", fault.describe()):  # type: ignore[union-attr]
            if self._inject_at is None:
                self._inject_at = time.monotonic()
            record = FaultRecord(fault.describe(), self.journal.now())  # type: ignore[union-attr]
            self._faults.append((fault, record))  # type: ignore[arg-type]
            self.journal.faults.append(record)
            fault.inject()  # type: ignore[union-attr]
            record.description = fault.describe()  # type: ignore[union-attr] # may name what it found
        return fault

    def mark_injected(self, what: str) -> None:
        """The fault is something the scenario does itself (a too-long render, a burst): time
        to detect counts from here. Nothing to heal."""
        with self.phase("inject", what):
            self._inject_at = time.monotonic()
            t = self.journal.now()
            self.journal.faults.append(FaultRecord(what, t, healed_at=t))

    def detect(self, check: Callable[[], T], what: str, timeout: float | Wait | None = None,
               poll: Poll = Poll(0.1)) -> T:
        """Wait for the runbook's symptom; records time to detect (from the first injection)."""
        limit = self.wait(timeout) if timeout is not None else self.detect_wait
        with self.phase("detect", what):
            try:
                value = wait_for(check, what=what, timeout=limit, poll=poll)
            except WaitTimeout as exc:
                self.fail(f"symptom within {exc.timeout:.0f}s: {what}", f"not seen; last: {exc.last}")
            self.detected()
            return value

    def detected(self) -> None:
        """The symptom was observed just now (by the scenario's own measurement): record the
        time to detect, counted from the first injection. Only the first observation counts."""
        if self.journal.time_to_detect_s is None:
            start = self._inject_at or self.journal.t0
            self.journal.time_to_detect_s = round(time.monotonic() - start, 3)

    def remedy(self, action: Callable[[], Any], what: str) -> Any:
        """Apply the runbook's prescribed remedy; time to recover counts from here."""
        with self.phase("remedy", what):
            self._remedy_at = time.monotonic()
            return action()

    def heal(self, fault: Fault, what: str | None = None) -> None:
        """The remedy is to remove the fault (start the DB, unblock the IP...)."""
        self.remedy(lambda: self._heal_one(fault, raise_errors=True), what or f"heal: {fault.describe()}")

    def recovered(self, check: Callable[[], T], what: str, timeout: float | Wait | None = None,
                  poll: Poll = Poll(0.2)) -> T:
        """Wait for a scenario-specific recovery condition after the remedy."""
        limit = self.wait(timeout) if timeout is not None else self.recover_wait
        with self.phase("recover", what):
            try:
                return wait_for(check, what=what, timeout=limit, poll=poll)
            except WaitTimeout as exc:
                self.fail(f"recovery within {exc.timeout:.0f}s: {what}", f"not recovered; last: {exc.last}")
                raise  # unreachable

    def steady_state_after(self, check_outputs: bool = True) -> Invariants:
        """The invariants of SCENARIOS.md; fails the scenario with every violation listed. Every
        fault still injected is healed first; one that cannot be healed fails the scenario."""
        inv = self.journal.invariants
        deadline = Deadline.after(self.timeouts.job_completion)
        with self.phase("steady_state_after"):
            heal_errors = self._heal_all()
            if heal_errors:
                raise FaultHealError(
                    f"[{self.scenario.id}] could not heal: {'; '.join(heal_errors)}; the target may need a manual "
                    "reset", scenario=self.scenario.id, faults=heal_errors)
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
    def _heal_one(self, fault: Fault, raise_errors: bool) -> str | None:
        record = next((r for f, r in self._faults if f is fault), None)
        try:
            fault.heal()
        except Exception as exc:  # noqa: BLE001 - every fault gets its heal; errors reported
            if record is not None:
                record.heal_error = f"{type(exc).__name__}: {exc}"
            if raise_errors:
                raise
            return f"{fault.describe()}: {exc}"
        if record is not None and record.healed_at is None:
            record.healed_at = self.journal.now()
            record.heal_error = None
        return None

    def _heal_all(self) -> list[str]:
        errors = []
        for fault, record in reversed(self._faults):
            if record.healed_at is not None:
                try:  # healed by the scenario already: heal() is idempotent, this is a safety net
                    fault.heal()
                except Exception:  # noqa: BLE001 - it was healed once; a second heal is best effort
                    pass
                continue
            err = self._heal_one(fault, raise_errors=False)
            if err:
                errors.append(err)
        return errors

    def _wait_healthy(self, deadline: Deadline, when: str) -> None:
        try:
            wait_for(lambda: (h := self.platform.health()).ok or _Unhealthy(h), what=f"health OK {when}",
                     timeout=deadline, poll=Poll(0.2, tolerate=(Exception,)))
        except WaitTimeout as exc:
            self.fail(f"the platform healthy {when} within {deadline.timeout:.0f}s", f"{exc.last}")

    def _wait_quiet(self, deadline: Deadline) -> None:
        """No job left pending or running from an earlier scenario (a leftover that finishes,
        fails or frees space in the middle of this one would blur what this one measures)."""
        if not self.platform.has(Feature.STATS):
            return

        def quiet() -> bool:
            counts = self.platform.job_counts() or {}
            return counts.get(JobState.PENDING, 0) + counts.get(JobState.RUNNING, 0) == 0

        try:
            wait_for(quiet, what="no job pending or running before the fault", timeout=deadline,
                     poll=Poll(0.3, tolerate=(Exception,)))
        except WaitTimeout as exc:
            self.journal.notes.append(f"started with jobs of an earlier scenario still in flight: {exc.last}")

    def _record(self, report: LedgerReport) -> None:
        inv = self.journal.invariants
        inv.accepted, inv.lost, inv.stuck = report.accepted, len(report.lost), len(report.stuck)
        inv.duplicated, inv.credit_errors = len(report.duplicated), len(report.credit_errors)
        inv.output_errors = len(report.output_errors)
        inv.recovered = report.by_status.get("completed", 0)
        self.journal.ledger = report.summary()

    def _orphans(self) -> int | None:
        roles = [r for r in ("api", "worker") if self.target.has(f"containers:{r}")]
        if not roles:
            self.journal.notes.append("orphan ffmpeg not checked: the target has no api/worker containers to "
                                      "inspect")
            return None
        from renderchaos.faults.container import orphan_ffmpeg

        hosts = [c for r in roles for c in self.target.containers(r)]

        def count() -> int:
            return sum(len(orphan_ffmpeg(s)) for s in hosts if s.state().get("Running"))

        # Nothing is running once every job is terminal; give exiting processes a moment.
        try:
            wait_for(lambda: count() == 0, what="no ffmpeg left in the API and worker containers",
                     timeout=5.0, poll=Poll(0.2))
        except WaitTimeout:
            return count()
        return 0

    def _canary(self) -> str | None:
        answer = self.submit(title="canary", duration=1.0)
        if not answer.ok or not answer.value:
            return f"canary render refused: {answer}"
        try:
            job = self.ledger.wait_terminal(answer.value, self.timeouts.job_completion, "the canary render to finish")
        except WaitTimeout as exc:
            return f"canary render did not finish: {exc.last}"
        if job.state is not JobState.COMPLETED:
            return f"canary render {job.brief()}"
        return None

    def close(self) -> list[str]:
        """Heal whatever is still injected and stop sampling. Returns the heal errors (the faults
        still active at the end)."""
        errors = self._heal_all()
        if self._sampler is not None:
            self.journal.samples = self._sampler.stop()
        return errors


class Unfinished(dict):  # type: ignore[type-arg]
    """Job id -> state of the jobs not finished yet: falsy for wait_for, readable in its message."""

    def __bool__(self) -> bool:
        return False


class _Unhealthy:
    """Falsy, readable: the last health answer in a wait's timeout message."""

    def __init__(self, health: Any) -> None:
        self.health = health

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        h = self.health
        return f"status {h.status}, failing {list(h.failing)}: {h.detail[:200]}"
