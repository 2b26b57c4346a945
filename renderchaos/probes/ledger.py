"""The job ledger: every job the target accepted, followed to a terminal state.

Counts like a queue checker: ``lost`` (accepted, then unknown to the target), ``stuck``
(not terminal by the deadline), ``duplicated`` (charged or refunded more than once), and
``recovered`` (completed). Where the platform keeps credits, checks the money, not only the
journal: every job charged exactly once and refunded exactly once when it did not complete,
and every account's balance equal to what its ledger adds up to (a balance changed without a
ledger row is a violation). Every ``completed`` job must have a valid output (downloaded and
ffprobed on the host) where the platform offers downloads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from renderchaos.errors import TargetError, WaitTimeout
from renderchaos.platforms.base import REFUNDED, Account, Answer, Feature, Job, JobState
from renderchaos.probes.media import output_problems, probe_bytes
from renderchaos.wait import Deadline, Poll, wait_for

if TYPE_CHECKING:
    from renderchaos.platforms.base import Platform


@dataclass
class Accepted:
    job_id: str
    account: Account | None  # the owner (downloads need it); None when not known
    expected: tuple[float, int, int] | None  # duration, width, height of a render; None: no size promised
    kind: str = "render"  # "render" | "ai": AI jobs have no output file


@dataclass
class LedgerReport:
    accepted: int = 0
    terminal: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    credit_errors: list[str] = field(default_factory=list)
    output_errors: list[str] = field(default_factory=list)
    credits_checked: int | None = None  # jobs whose charges were checked; None: platform has no credits
    balances_checked: int | None = None  # accounts whose balance was compared with their ledger

    @property
    def ok(self) -> bool:
        return not (self.lost or self.stuck or self.duplicated or self.credit_errors or self.output_errors)

    def problems(self) -> list[str]:
        out = []
        for name in ("lost", "stuck", "duplicated", "credit_errors", "output_errors"):
            items = getattr(self, name)
            if items:
                out.append(f"{name}: {len(items)} ({'; '.join(items[:5])}{' ...' if len(items) > 5 else ''})")
        return out

    def summary(self) -> dict[str, Any]:
        """The figures results.json carries under ``ledger``."""
        return {"accepted": self.accepted, **{s.value: self.by_status.get(s.value, 0) for s in JobState
                                               if s.terminal},
                "lost": len(self.lost), "stuck": len(self.stuck), "duplicated": len(self.duplicated),
                "credit_errors": len(self.credit_errors), "output_errors": len(self.output_errors),
                "credits_checked": self.credits_checked, "balances_checked": self.balances_checked}


#: how long a platform must keep saying it does not know an accepted job before it counts as lost
LOST_CONFIRM_S = 2.0


class JobLedger:
    def __init__(self, platform: "Platform", tmp_dir: "Path | None" = None) -> None:
        self.platform = platform
        self.tmp_dir = tmp_dir  # where downloaded outputs are probed (the run's swept temp dir)
        self.jobs: dict[str, Accepted] = {}
        self.final: dict[str, Job] = {}
        self.accounts: dict[str, Account] = {}  # every account whose money the audit checks

    def watch_account(self, account: Account) -> Account:
        """Include ``account``'s balance in the audit (balance == sum of its ledger)."""
        self.accounts[account.id] = account
        return account

    def accept(self, answer: Answer[str], account: Account | None = None,
               expected: tuple[float, int, int] | None = None, kind: str = "render") -> str | None:
        """Record the job if the target accepted it; return its id."""
        if not answer.ok or not answer.value:
            return None
        return self.accept_id(answer.value, account, expected, kind)

    def accept_id(self, job_id: str, account: Account | None = None,
                  expected: tuple[float, int, int] | None = None, kind: str = "render") -> str:
        """Record a job known to be accepted by other means (AI API, Locust users, ...)."""
        self.jobs[job_id] = Accepted(job_id, account, expected, kind)
        if account is not None and account.id not in self.accounts:
            self.accounts[account.id] = account
        return job_id

    def status(self, job_id: str) -> Job | None:
        return self.platform.observe_job(job_id)

    def wait_terminal(self, job_id: str, timeout: float | Deadline, what: str | None = None) -> Job:
        def check() -> Job | None:
            job = self.platform.observe_job(job_id)
            return job if job is not None and job.terminal else None

        job = wait_for(check, what=what or f"job {job_id} to reach a terminal state", timeout=timeout,
                       poll=Poll(0.25, tolerate=(OSError, TargetError, _http_errors())))
        self.final[job_id] = job
        return job

    def audit(self, deadline: Deadline, check_outputs: bool = True) -> LedgerReport:
        """Wait (up to ``deadline``) for every accepted job to settle, then check everything."""
        rep = LedgerReport(accepted=len(self.jobs))
        pending = dict(self.jobs)
        unknown_since: dict[str, float] = {}

        def settled() -> bool:
            for job_id in list(pending):
                try:
                    job = self.platform.observe_job(job_id)
                except (OSError, TargetError, _http_errors()):
                    continue  # the target may still be recovering; the deadline bounds this
                if job is None:
                    # lost once the platform has denied knowing it for LOST_CONFIRM_S (a job between
                    # two of its tables, say a queue row deleted just before its history row lands)
                    first = unknown_since.setdefault(job_id, time.monotonic())
                    if time.monotonic() - first >= LOST_CONFIRM_S:
                        rep.lost.append(f"{job_id}: accepted, now unknown to the target")
                        del pending[job_id]
                    continue
                unknown_since.pop(job_id, None)
                if job.terminal:
                    self.final[job_id] = job
                    del pending[job_id]
            return not pending

        try:
            wait_for(settled, what=f"{len(pending)} accepted jobs to reach a terminal state", timeout=deadline,
                     poll=Poll(0.5, tolerate=()))
        except WaitTimeout:
            pass  # what is still pending is reported as stuck below
        for job_id in list(pending):
            if job_id in unknown_since:  # still denied at the deadline: lost, however short the wait
                rep.lost.append(f"{job_id}: accepted, now unknown to the target")
                del pending[job_id]
        for job_id in pending:
            job = self.final.get(job_id) or _safe(self.platform.observe_job, job_id)
            rep.stuck.append(f"{job_id}: still {job.state if job else '?'} at "
                             f"{job.progress if job else '?'}% after {deadline.timeout:.0f}s")
        credits = self.platform.has(Feature.CREDITS)
        rep.credits_checked = 0 if credits else None
        for job_id, job in self.final.items():
            if job_id not in self.jobs:
                continue
            rep.terminal += 1
            rep.by_status[job.state.value] = rep.by_status.get(job.state.value, 0) + 1
            if credits:
                self._check_charges(job, rep)
            acc = self.jobs[job_id]
            if (check_outputs and job.state is JobState.COMPLETED and acc.kind == "render"
                    and acc.account is not None and self.platform.has(Feature.DOWNLOAD)):
                self._check_output(acc, rep)
        if credits:
            self._check_balances(rep)
        return rep

    def _check_charges(self, job: Job, rep: LedgerReport) -> None:
        try:
            counted = self.platform.job_charges(job.id)
        except Exception as exc:  # noqa: BLE001 - reported, not swallowed
            rep.credit_errors.append(f"{job.id}: ledger unreadable: {exc}")
            return
        if counted is None:
            return
        rep.credits_checked = (rep.credits_checked or 0) + 1
        charges, refunds = counted
        want_refunds = 1 if job.state in REFUNDED else 0
        if charges > 1 or refunds > 1:
            rep.duplicated.append(f"{job.id}: charged {charges}x, refunded {refunds}x")
        elif charges != 1 or refunds != want_refunds:
            rep.credit_errors.append(f"{job.id} ({job.state}): charged {charges}x, refunded {refunds}x; "
                                     f"expected 1 charge and {want_refunds} refund")

    def _check_balances(self, rep: LedgerReport) -> None:
        """The money itself: each account's balance equals the sum of its ledger rows."""
        rep.balances_checked = 0
        for account in self.accounts.values():
            try:
                balance, total = self.platform.balance(account), self.platform.ledger_total(account)
            except Exception as exc:  # noqa: BLE001 - reported, not swallowed
                rep.credit_errors.append(f"account {account.id}: balance unreadable: {exc}")
                continue
            if balance is None or total is None:
                continue
            rep.balances_checked += 1
            if balance != total:
                rep.credit_errors.append(f"account {account.id}: balance {balance} but its ledger adds up to "
                                         f"{total} (money moved without a ledger row)")

    def _check_output(self, acc: Accepted, rep: LedgerReport) -> None:
        assert acc.account is not None
        answer = self.platform.download(acc.account, acc.job_id)
        if answer.status is None:
            rep.output_errors.append(f"{acc.job_id}: download failed: {answer.transport_error}")
            return
        if not answer.ok or answer.value is None:
            rep.output_errors.append(f"{acc.job_id}: completed but download answered {answer}")
            return
        try:
            info = probe_bytes(answer.value, tmp_dir=self.tmp_dir)
        except ValueError as exc:
            rep.output_errors.append(f"{acc.job_id}: completed but output invalid: {exc}")
            return
        problems = output_problems(info, *acc.expected) if acc.expected else []
        if problems:
            rep.output_errors.append(f"{acc.job_id}: " + ", ".join(problems))


def _http_errors() -> type[BaseException]:
    import httpx

    return httpx.HTTPError


def _safe(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001
        return None
