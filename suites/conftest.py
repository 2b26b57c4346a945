"""Helpers the suites share: waiting on jobs, cancelling leftovers, holds, AI clients.

Everything here speaks the platform seam (:mod:`renderchaos.platforms.base`); nothing names a
platform's endpoints.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import httpx
import pytest

from renderchaos.errors import TargetError, WaitTimeout
from renderchaos.platforms.base import Feature, Job, JobState
from renderchaos.scenario import ScenarioRun, Unfinished
from renderchaos.wait import Poll, wait_for

#: polling the platform while it may be recovering: transport errors and odd answers mean "not yet"
POLL = Poll(0.2, tolerate=(httpx.HTTPError, TargetError, OSError))


def brief(job: Job | None) -> str:
    return job.brief() if job is not None else "unknown to the platform"


def state_of(run: ScenarioRun, job_id: str) -> JobState | None:
    job = run.job(job_id)
    return job.state if job else None


def ended(run: ScenarioRun, job_id: str) -> Any:
    """The job if it is terminal, else a falsy :class:`Unfinished` saying where it is (a check for
    detect / recovered whose timeout message shows the job's last state)."""
    found = run.terminal(job_id)
    return found[job_id] if found else found  # type: ignore[index]


def all_completed(run: ScenarioRun, ids: list[str]) -> bool | Unfinished:
    states = {i: str(state_of(run, i) or "unknown") for i in ids}
    left = Unfinished({i: s for i, s in states.items() if s != JobState.COMPLETED.value})
    return True if len(left) == 0 else left


def hold_absent(check: Callable[[], Any], what: str, seconds: float) -> None:
    """Scenario step: for ``seconds``, ``check`` must stay falsy (a hold, not a readiness wait)."""
    try:
        wait_for(check, what=what, timeout=seconds, poll=Poll(0.5))
    except WaitTimeout:
        return
    raise AssertionError(what)


@contextlib.contextmanager
def cancel_leftovers(run: ScenarioRun) -> Iterator[None]:
    """If the scenario fails with a render still running (a planted hang), cancel it so the
    worker kills its ffmpeg and the target is usable by the next test."""
    try:
        yield
    except BaseException:
        if run.platform.has(Feature.CANCEL):
            cancelled = []
            for job_id, acc in list(run.ledger.jobs.items()):
                with contextlib.suppress(Exception):
                    job = run.job(job_id)
                    if job is not None and not job.terminal and acc.account is not None:
                        run.platform.cancel(acc.account, job_id)
                        cancelled.append(job_id)
            with contextlib.suppress(Exception):  # bounded: the next scenario checks it is quiet anyway
                wait_for(lambda: run.terminal(*cancelled), what="the cancelled jobs to end",
                         timeout=run.timeouts.job_completion, poll=POLL)
        raise


def submit_retrying(run: ScenarioRun, timeout: float = 30.0, **fields: Any) -> str:
    """Submit a render, retried (bounded) while the platform answers rate_limited; the job id."""
    from renderchaos.platforms.base import ErrorKind

    def once() -> Any:
        answer = run.submit(**fields)
        return None if answer.kind is ErrorKind.RATE_LIMITED else answer

    answer = wait_for(once, what="the platform to accept the submit (not rate limited)", timeout=timeout,
                      poll=Poll(0.3))
    return run.accepted(answer, fields.get("title", "render"))


def hold_workers(run: ScenarioRun) -> Any:
    """Stop the workers from taking jobs while the API keeps answering: through the platform
    where it can (workers sharing the API's process), else by freezing the worker containers."""
    from renderchaos.faults.spec import Freeze

    return run.platform.hold_workers() or Freeze("worker", index=None)


@pytest.fixture
def ai(scenario_run: ScenarioRun) -> Iterator[Any]:
    """The AI API as the scenario's own tenant (platforms with the ai_jobs group)."""
    run = scenario_run
    run.target.require(Feature.AI_JOBS)
    client = run.platform.ai_api(run.account)  # type: ignore[attr-defined]
    yield client
    client.close()
