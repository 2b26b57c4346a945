"""The job ledger: every job the target accepted, followed to a terminal state.

Counts like a queue checker: ``lost`` (accepted, then unknown to the target), ``stuck``
(not terminal by the deadline), ``duplicated`` (charged or refunded more than once, or a
second output), ``recovered`` (completed after a fault hit it). Checks credits exactly
once and that every ``completed`` job has a valid output (downloaded, ffprobed on the host).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from renderchaos.probes.api import Admin, RenderApi
from renderchaos.probes.media import output_problems, probe_bytes
from renderchaos.errors import WaitTimeout
from renderchaos.wait import Deadline, Poll, wait_for

TERMINAL = frozenset({"completed", "failed", "timeout", "cancelled"})
REFUNDED = frozenset({"failed", "timeout", "cancelled"})


@dataclass
class Accepted:
    job_id: str
    api: RenderApi | None  # the owner's client (downloads need it); None for AI jobs
    expected: tuple[float, int, int] | None  # duration, width, height of a render


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


class JobLedger:
    def __init__(self, admin: Admin, tmp_dir: "Path | None" = None) -> None:
        self.admin = admin
        self.tmp_dir = tmp_dir  # where downloaded outputs are probed (the run's swept temp dir)
        self.jobs: dict[str, Accepted] = {}
        self.final: dict[str, dict[str, Any]] = {}

    def accept(self, resp: httpx.Response, api: RenderApi | None = None,
               expected: tuple[float, int, int] | None = None) -> str | None:
        """Record the job if the target accepted it (2xx with an id); return its id."""
        if resp.status_code // 100 != 2:
            return None
        job_id = resp.json().get("id")
        if job_id:
            self.jobs[job_id] = Accepted(job_id, api, expected)
        return job_id

    def accept_id(self, job_id: str, api: RenderApi | None = None,
                  expected: tuple[float, int, int] | None = None) -> str:
        """Record a job known to be accepted by other means (AI API, Locust users, ...)."""
        self.jobs[job_id] = Accepted(job_id, api, expected)
        return job_id

    def status(self, job_id: str) -> dict[str, Any] | None:
        return self.admin.job(job_id)

    def wait_terminal(self, job_id: str, timeout: float | Deadline, what: str | None = None) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            job = self.admin.job(job_id)
            return job if job and job["status"] in TERMINAL else None

        job = wait_for(check, what=what or f"job {job_id} to reach a terminal state", timeout=timeout,
                       poll=Poll(0.25, tolerate=(httpx.HTTPError,)))
        self.final[job_id] = job
        return job

    def audit(self, deadline: Deadline, check_outputs: bool = True) -> LedgerReport:
        """Wait (up to ``deadline``) for every accepted job to settle, then check everything."""
        rep = LedgerReport(accepted=len(self.jobs))
        pending = dict(self.jobs)

        def settled() -> bool:
            for job_id in list(pending):
                try:
                    job = self.admin.job(job_id)
                except httpx.HTTPError:
                    continue  # the target may still be recovering; the deadline bounds this
                if job is None:
                    rep.lost.append(f"{job_id}: accepted, now unknown to the target")
                    del pending[job_id]
                elif job["status"] in TERMINAL:
                    self.final[job_id] = job
                    del pending[job_id]
            return not pending

        try:
            wait_for(settled, what=f"{len(pending)} accepted jobs to reach a terminal state", timeout=deadline,
                     poll=Poll(0.5, tolerate=()))
        except WaitTimeout:
            pass  # what is still pending is reported as stuck below
        for job_id in pending:
            job = self.final.get(job_id) or _safe(self.admin.job, job_id) or {}
            rep.stuck.append(f"{job_id}: still {job.get('status', '?')} at "
                             f"{job.get('progress', '?')}% after {deadline.timeout:.0f}s")
        for job_id, job in self.final.items():
            rep.terminal += 1
            rep.by_status[job["status"]] = rep.by_status.get(job["status"], 0) + 1
            self._check_credits(job, rep)
            acc = self.jobs.get(job_id)
            if check_outputs and job["status"] == "completed" and acc and acc.api and acc.expected:
                self._check_output(acc, rep)
        return rep

    def _check_credits(self, job: dict[str, Any], rep: LedgerReport) -> None:
        try:
            led = self.admin.job_ledger(job["id"])
        except Exception as exc:  # noqa: BLE001 - reported, not swallowed
            rep.credit_errors.append(f"{job['id']}: ledger unreadable: {exc}")
            return
        kinds = [e["kind"] for e in led["entries"]]
        charges, refunds = kinds.count("charge"), kinds.count("refund")
        want_refunds = 1 if job["status"] in REFUNDED else 0
        if charges > 1 or refunds > 1:
            rep.duplicated.append(f"{job['id']}: charged {charges}x, refunded {refunds}x")
        elif charges != 1 or refunds != want_refunds:
            rep.credit_errors.append(f"{job['id']} ({job['status']}): charged {charges}x, refunded {refunds}x; "
                                     f"expected 1 charge and {want_refunds} refund")

    def _check_output(self, acc: Accepted, rep: LedgerReport) -> None:
        assert acc.api is not None and acc.expected is not None
        try:
            resp = acc.api.download(acc.job_id)
        except httpx.HTTPError as exc:
            rep.output_errors.append(f"{acc.job_id}: download failed: {exc}")
            return
        if resp.status_code != 200:
            rep.output_errors.append(f"{acc.job_id}: completed but download answered {resp.status_code}")
            return
        try:
            info = probe_bytes(resp.content, tmp_dir=self.tmp_dir)
        except ValueError as exc:
            rep.output_errors.append(f"{acc.job_id}: completed but output invalid: {exc}")
            return
        problems = output_problems(info, *acc.expected)
        if problems:
            rep.output_errors.append(f"{acc.job_id}: " + ", ".join(problems))


def _safe(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001
        return None

