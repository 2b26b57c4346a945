"""The operations a Locust user performs through the platform adapter, and what each expects.

Every adapter call a user makes is one Locust request named after its operation (request type
and name both the operation: ``submit``, ``job``...). Its response time is the adapter's
``Answer.elapsed``; it is a failure when the answer is not what the operation expects. Load
thresholds (:mod:`renderchaos.load.thresholds`) are keyed by these names.

    operation    adapter call                         expects
    submit       platform.submit(account, request)    accepted, a job id
    job          platform.job(account, id)            the job (any state), the same id
    list         platform.list_jobs(account)          a list of jobs
    download     platform.download(account, id)       output bytes, not empty      (feature download)
    ai_submit    platform.ai_submit(account, prompt)  accepted, a job id           (feature ai_jobs)
    ai_job       platform.ai_job(account, id)         the AI job, the same id      (feature ai_jobs)
    health       platform.health()                    healthy                      (capacity benchmark)

No Locust import here (unit-tested in the pytest process).
"""

from __future__ import annotations

from typing import Any, Callable

from renderchaos.platforms.base import Answer, ErrorKind, Health, Job

SUBMIT, JOB, LIST, DOWNLOAD, AI_SUBMIT, AI_JOB, HEALTH = "submit", "job", "list", "download", "ai_submit", "ai_job", \
    "health"
OPERATIONS = (SUBMIT, JOB, LIST, DOWNLOAD, AI_SUBMIT, AI_JOB, HEALTH)

#: refusals after which a client waits the platform's retry_after and tries again
RETRY_KINDS = frozenset({ErrorKind.RATE_LIMITED, ErrorKind.DEPENDENCY_UNAVAILABLE})


def refusal(answer: Answer[Any]) -> str:
    """A short, stable description of a failed answer: Locust groups failures by this text, so it
    carries the status, kind and the platform's code, not the message (ids, timings)."""
    if answer.status is None:
        reason = (answer.transport_error or "").split(":", 1)[0] or "no answer"
        return f"no answer ({reason})"
    if answer.error is not None:
        code = f" {answer.error.code}" if answer.error.code else ""
        return f"{answer.status} {answer.error.kind}{code}"
    return f"{answer.status}"


def accepted(answer: Answer[Any]) -> str | None:
    """``submit`` / ``ai_submit``: None when accepted with a job id, else what came back."""
    if not answer.ok:
        return refusal(answer)
    if not isinstance(answer.value, str) or not answer.value:
        return f"{answer.status} accepted without a job id"
    return None


def the_job(job_id: str) -> Callable[[Answer[Any]], str | None]:
    """``job`` / ``ai_job``: the job itself (any state: a failed render is a valid answer)."""
    def check(answer: Answer[Any]) -> str | None:
        if not answer.ok:
            return refusal(answer)
        if not isinstance(answer.value, Job):
            return f"{answer.status} answer is not a job"
        if answer.value.id != job_id:
            return f"{answer.status} answer is another job"
        return None
    return check


def jobs_list(answer: Answer[Any]) -> str | None:
    if not answer.ok:
        return refusal(answer)
    if not isinstance(answer.value, list):
        return f"{answer.status} answer is not a list of jobs"
    return None


def output_bytes(answer: Answer[Any]) -> str | None:
    if not answer.ok:
        return refusal(answer)
    if not isinstance(answer.value, (bytes, bytearray)) or len(answer.value) == 0:
        return f"{answer.status} empty download"
    return None


def healthy(health: Health) -> str | None:
    if health.ok:
        return None
    if health.status is None:
        return f"no answer ({health.detail.split(':', 1)[0] or 'no answer'})"
    return f"{health.status} unhealthy {','.join(health.failing)}".rstrip()


def length(answer: Answer[Any]) -> int:
    """Bytes of the answer (the content for a download), for Locust's content-size column."""
    if isinstance(answer.value, (bytes, bytearray)):
        return len(answer.value)
    if answer.response is not None:
        try:
            return len(answer.response.content)
        except Exception:  # noqa: BLE001 - a streamed body that was not read: size unknown
            return 0
    return 0
