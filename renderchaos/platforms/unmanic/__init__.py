"""Unmanic (PyPI ``unmanic``) behind the platform seam: a platform nobody on this team wrote.

Unmanic transcodes the files of a library: a Tornado web API, worker threads that run ffmpeg,
SQLite. It has no accounts and no auth (one fixed identity), no credits, no render templates:
a "render" here is a transcode of an input file the harness drops into the library (the local
plugin ``renderchaos_h264`` gives the workers their ffmpeg command). See
``docs/findings/unmanic-notes.md`` for the API and ``docs/findings/unmanic.md`` for what the
suite found.

How jobs map: a job id is the input's unique file name in the library. Unmanic reuses its task
ids and deletes a task's row once it is done, so the adapter remembers, per job, the input path
and the newest history id before it was queued: the job is ``completed`` / ``failed`` once a
history row newer than that exists for the file, ``pending`` / ``running`` while its task row
is in the queue, and lost (``observe_job`` answers ``None``) when it is in neither.
"""

from __future__ import annotations

import re
import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

import httpx

from renderchaos.errors import TargetError
from renderchaos.platforms.base import (
    Account, Answer, ApiError, Asset, ErrorKind, Feature, Health, InvalidRequest, Job, JobState, Platform,
    PlatformEndpoint, RenderRequest, timed,
)
from renderchaos.platforms.unmanic.api import API_PREFIX, PLUGIN_ID, UnmanicClient, output_path, plugin_zip
from renderchaos.wait import Poll, wait_for

#: the library and cache as Unmanic sees them (compose mounts them there)
LIBRARY = "/library"
#: task ids asked for when looking up a job by its file name (Unmanic reuses ids from 1)
QUEUE_IDS = 2000
#: a synthesized input is at most this long: Unmanic transcodes what it is given
MAX_INPUT_SECONDS = 60.0

#: words in a failed task's log -> the runbook's error codes
_CODES = (
    (re.compile(r"No space left on device|ENOSPC|Disk quota exceeded", re.I), "storage_full"),
    (re.compile(r"Invalid data found when processing input|moov atom not found|Invalid NAL|could not find codec "
                r"parameters|Error splitting the input|partial file|error reading header|does not contain any "
                r"stream|matches no streams|Error opening input|Picture size .* is invalid", re.I), "invalid_media"),
    (re.compile(r"No such file or directory", re.I), "input_not_found"),
    (re.compile(r"Permission denied", re.I), "input_permission_denied"),
    (re.compile(r"WORKER TERMINATED|Killed|signal 9", re.I), "resource_exhausted"),
)


@dataclass
class _Tracked:
    path: str  # the input as Unmanic sees it (/library/...)
    mark: int  # newest history id before the task was queued
    task_id: int
    expected: tuple[float, int, int] | None
    cancelled: bool = False


def _dt(ts: float) -> datetime | None:
    return datetime.fromtimestamp(ts, tz=timezone.utc) if ts else None


class UnmanicPlatform(Platform):
    name: ClassVar[str] = "unmanic"
    features: ClassVar[frozenset[Feature]] = frozenset({
        Feature.ASSETS, Feature.DOWNLOAD, Feature.STATS, Feature.OPENAPI, Feature.VALIDATION, Feature.CANCEL})

    #: runbook behaviours Unmanic 0.4.1 violates (docs/findings/unmanic.md): each scenario here is
    #: a strict expected failure carrying this text; the day Unmanic fixes it the run says so
    findings: ClassVar[dict[str, str]] = {
        "render.input_corrupt": "R §一.1 错误2: no ffprobe gate before the encode: an input with absurd 8x8 "
                                "dimensions is transcoded and reported as success instead of being rejected as "
                                "invalid media (F3 in docs/findings/unmanic.md)",
        "render.input_corrupt.corpus": "R §一.1 错误2: inputs the runbook's ffprobe gate rejects are transcoded and "
                                       "reported as success (a PNG named .mp4, an 8x8 video) (docs/findings/unmanic.md)",
        "render.hang": "R §一.3 原因4: a SIGSTOPped ffmpeg is never noticed: no progress watchdog, no time limit; the "
                       "task stays in progress at 0% for good (F4)",
        "queue.worker_killed": "R §一.2 / A §2.1: when Unmanic is killed mid-task and restarted, it deletes every "
                               "task of its queue at start (clear_pending_tasks_on_restart), the running one and the "
                               "pending ones, without a history row: accepted jobs are lost (F8)",
        "load.chaos": "A §2.1: under load, killing the Unmanic process loses every job in flight or queued (as in "
                      "queue.worker_killed) (F8)",
        "api.validation": "R §二.3: a malformed JSON body or an empty body is answered 400 with a Python traceback "
                          "in the body (Tornado debug mode) (API errors table)",
        "api.fuzz": "R §二.3: its own OpenAPI fuzzed: hundreds of 500s (unknown ids, invalid values), most with a "
                    "Python traceback in the body, requests answered by a dropped connection, answers its schema "
                    "does not document (API errors table)",
    }

    def __init__(self, endpoint: PlatformEndpoint, timeout: float = 10.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(endpoint, timeout)
        self.client = UnmanicClient(endpoint.api_url, timeout=httpx.Timeout(timeout, connect=2.0), transport=transport)
        self.transport = transport
        self.workers = int(endpoint.settings.get("workers", 1))
        self.jobs: dict[str, _Tracked] = {}
        self.library = endpoint.host_dirs.get("library")

    def close(self) -> None:
        self.client.close()

    # -- setup --------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Give a fresh Unmanic what it needs to process files offline: the local plugin, enabled
        for the library (scanner and inotify off: the harness queues every file itself), and a
        worker group. Idempotent."""
        def installed() -> bool:
            if PLUGIN_ID in self.client.installed_plugins():
                return True
            # right after start Unmanic sometimes drops the upload's connection: ask again
            self.client.install_plugin(plugin_zip())
            return PLUGIN_ID in self.client.installed_plugins()

        wait_for(installed, what=f"Unmanic to install the local plugin {PLUGIN_ID}", timeout=30.0,
                 poll=Poll(0.5, tolerate=(TargetError,)))
        self.client.write_library(1, LIBRARY, enable_scanner=False, enable_inotify=False,
                                  enabled_plugins=[PLUGIN_ID])
        self.client.set_worker_count(self.workers)
        wait_for(lambda: len(self.client.workers()) >= self.workers, what=f"{self.workers} Unmanic worker(s) to exist",
                 timeout=30.0, poll=Poll(0.3, tolerate=(TargetError,)))

    # -- plumbing -------------------------------------------------------------------------------
    def http(self, account: Account | None, **kwargs: Any) -> httpx.Client:
        kwargs.setdefault("timeout", httpx.Timeout(self.timeout))
        if self.transport is not None:
            kwargs.setdefault("transport", self.transport)
        return httpx.Client(base_url=self.endpoint.api_url + API_PREFIX, **kwargs)

    def classify(self, resp: httpx.Response) -> ApiError | None:
        if 200 <= resp.status_code < 300:
            return None
        try:
            body = resp.json()
            message = str(body.get("error", "")) if isinstance(body, dict) else resp.text
            fields = body.get("messages") if isinstance(body, dict) else None
        except ValueError:
            message, fields = resp.text, None
        field = next(iter(fields), None) if isinstance(fields, dict) and fields else None
        code = None
        if "Path does not exist" in message:
            code = "input_not_found"
        kind = {400: ErrorKind.INVALID_PARAMETER, 404: ErrorKind.NOT_FOUND, 405: ErrorKind.OTHER,
                409: ErrorKind.CONFLICT}.get(resp.status_code,
                                             ErrorKind.SERVER_ERROR if resp.status_code >= 500 else ErrorKind.OTHER)
        return ApiError(kind, resp.status_code, code, message[:500], field)

    # -- core -----------------------------------------------------------------------------------
    def health(self) -> Health:
        t0 = time.monotonic()
        try:
            version = self.client.version()
        except TargetError as exc:
            return Health(False, getattr(exc, "status", None), (), time.monotonic() - t0, str(exc)[:300])
        return Health(True, 200, (), time.monotonic() - t0, version)

    def open_account(self, name: str = "renderchaos", credits: int | None = None) -> Account:
        return Account("unmanic")  # no accounts: one identity for everyone

    def _library(self) -> Path:
        if self.library is None:
            raise TargetError("the Unmanic adapter needs the library's host directory (host_dirs.library: the "
                              "compose file's x-renderchaos.host_dirs, or [target.host_dirs] library = ...)")
        return Path(self.library)

    def place_asset(self, source: Path, name: str | None = None) -> Asset:
        name = f"rc-{uuid.uuid4().hex[:10]}-{name or source.name}"
        dest = self._library() / name
        shutil.copyfile(source, dest)
        dest.chmod(0o644)
        return Asset(ref=f"{LIBRARY}/{name}", host_path=dest)

    def remove_asset(self, asset: Asset) -> None:
        """An input a job was queued with stays: Unmanic writes that job's output in its place (the
        library goes with the stack)."""
        if asset.host_path is not None and not any(t.path == asset.ref for t in self.jobs.values()):
            asset.host_path.unlink(missing_ok=True)

    def missing_asset(self) -> Asset:
        name = f"rc-missing-{uuid.uuid4().hex[:10]}.mp4"
        return Asset(ref=f"{LIBRARY}/{name}", host_path=self._library() / name)

    def _synthesize(self, request: RenderRequest) -> Asset:
        """A "render" without an input: a clean clip of the requested size and duration (capped)."""
        from media_fixtures.generate import valid_clip
        from renderchaos.faults.media import cache_dir

        seconds = min(float(request.duration), MAX_INPUT_SECONDS)
        clip = valid_clip(cache_dir(), seconds=seconds, width=int(request.width), height=int(request.height))
        return self.place_asset(clip, f"{re.sub(r'[^A-Za-z0-9]+', '-', request.title)[:40]}.mp4")

    def expected_output(self, request: RenderRequest, job_id: str | None = None) -> tuple[float, int, int] | None:
        """A transcode keeps its input's duration and size: what the input measured at submit."""
        t = self.jobs.get(job_id or "")
        return t.expected if t else None

    def submit(self, account: Account, request: RenderRequest) -> Answer[str]:
        if request.audio is not None:
            raise NotImplementedError("Unmanic transcodes one input file: it has no separate audio track")
        asset = request.input or self._synthesize(request)
        expected = _measure(asset.host_path) if asset.host_path is not None else None
        mark = self.client.last_history_id()
        answer: Answer[dict[str, Any]] = timed(
            lambda: self.client._http.post("/pending/create", json={"path": asset.ref, "library_id": 1}),
            self.classify, lambda r: r.json())
        if not answer.ok or answer.value is None:
            return Answer(answer.status, answer.elapsed, error=answer.error, transport_error=answer.transport_error,
                          response=answer.response)
        job_id = Path(asset.ref).name
        self.jobs[job_id] = _Tracked(asset.ref, mark, int(answer.value["id"]), expected)
        return Answer(answer.status, answer.elapsed, value=job_id, response=answer.response)

    def observe_job(self, job_id: str) -> Job | None:
        t = self.jobs.get(job_id)
        if t is None:
            return self._observe_untracked(job_id)
        job = self._observe(job_id, t)
        if t.cancelled and (job is None or job.terminal):  # gone from the queue or ended: by our cancel
            return Job(job_id, JobState.CANCELLED, error_code="cancelled", raw=job.raw if job else {})
        return job

    def _observe_untracked(self, job_id: str) -> Job | None:
        """A job another adapter instance queued (a Locust user's): its file name is unique, so any
        history row, queue row or worker naming it is this job's."""
        path = f"{LIBRARY}/{job_id}"
        done = self.client.completed(path, 0)
        if done is not None:
            return self._finished(job_id, _Tracked(path, 0, -1, None), done)
        # task ids are small and reused: ask for every row of the queue, in any status
        row = next((r for r in self.client.task_status(list(range(1, QUEUE_IDS))) if r.abspath == path), None)
        if row is not None:
            return Job(job_id, JobState.PENDING if row.status == "pending" else JobState.RUNNING,
                       raw={"task": row.__dict__})
        done = self.client.completed(path, 0)  # it ended between the reads
        return self._finished(job_id, _Tracked(path, 0, -1, None), done) if done is not None else None

    def _observe(self, job_id: str, t: _Tracked) -> Job | None:
        done = self.client.completed(t.path, t.mark)
        if done is not None:
            return self._finished(job_id, t, done)
        rows = [r for r in self.client.task_status([t.task_id]) if r.abspath == t.path]
        if not rows:
            done = self.client.completed(t.path, t.mark)  # the row went between the two reads
            return self._finished(job_id, t, done) if done is not None else None
        state = JobState.PENDING if rows[0].status == "pending" else JobState.RUNNING
        progress = None
        if state is JobState.RUNNING:
            name = Path(t.path).name
            progress = next((w.percent for w in self.client.workers()
                             if w.current_task == t.task_id and w.current_file == name), None)
        return Job(job_id, state, progress=progress, raw={"task": rows[0].__dict__})

    def _finished(self, job_id: str, t: _Tracked, done: Any) -> Job:
        out = output_path(t.path)
        if done.success:
            size = None
            if self.library is not None:
                host = self._library() / Path(out).name
                size = host.stat().st_size if host.exists() else None
            return Job(job_id, JobState.COMPLETED, progress=100.0, output=out, output_bytes=size,
                       started_at=_dt(done.start_time), finished_at=_dt(done.finish_time), raw=done.__dict__)
        log = self.client.task_log(done.id)
        if not log.strip():
            # the post-processor writes the history row first and its log right after: not final yet
            return Job(job_id, JobState.RUNNING, progress=100.0, raw=done.__dict__)
        code = next((c for pattern, c in _CODES if pattern.search(log)), "render_failed")
        printed = log.split("\nLOG:\n", 1)[-1].strip()  # what ffmpeg printed, after Unmanic's preamble
        return Job(job_id, JobState.FAILED, error_code=code, error_message=printed[-2000:],
                   started_at=_dt(done.start_time), finished_at=_dt(done.finish_time), raw=done.__dict__)

    def cancel(self, account: Account, job_id: str) -> Answer[None]:
        """Unmanic has no cancel: a queued task is deleted from the queue, a running one ends with
        its worker terminated (ffmpeg killed, history row "WORKER TERMINATED")."""
        t0 = time.monotonic()
        t = self.jobs.get(job_id)
        if t is None:
            return Answer(404, time.monotonic() - t0, error=ApiError(ErrorKind.NOT_FOUND, 404, None, "unknown job"))
        t.cancelled = True
        name = Path(t.path).name  # task ids are reused: match the file too
        worker = next((w for w in self.client.workers() if w.current_task == t.task_id and w.current_file == name),
                      None)
        if worker is not None:
            self.client.terminate_worker(worker.id)
        elif any(r.abspath == t.path for r in self.client.task_status([t.task_id])):
            self.client.delete_tasks([t.task_id])
        return Answer(200, time.monotonic() - t0)

    def job(self, account: Account, job_id: str) -> Answer[Job]:
        t0 = time.monotonic()
        job = self.observe_job(job_id)
        if job is None:
            return Answer(404, time.monotonic() - t0, error=ApiError(ErrorKind.NOT_FOUND, 404, None, "unknown job"))
        return Answer(200, time.monotonic() - t0, value=job)

    def list_jobs(self, account: Account, limit: int = 20) -> Answer[list[Job]]:
        t0 = time.monotonic()
        jobs = [j for j in (self.observe_job(i) for i in list(self.jobs)[-limit:]) if j is not None]
        return Answer(200, time.monotonic() - t0, value=jobs)

    def download(self, account: Account, job_id: str, timeout: float = 60.0) -> Answer[bytes]:
        t0 = time.monotonic()
        host = self._library() / Path(output_path(f"{LIBRARY}/{job_id}")).name  # ids are file names
        if not host.exists():
            return Answer(404, time.monotonic() - t0, error=ApiError(ErrorKind.NOT_FOUND, 404, None,
                                                                      f"no output file for {job_id}"))
        return Answer(200, time.monotonic() - t0, value=host.read_bytes())

    def job_counts(self) -> dict[JobState, int] | None:
        pending = len(self.client.pending())
        running = sum(1 for w in self.client.workers() if not w.idle)
        return {JobState.PENDING: pending, JobState.RUNNING: running}

    def openapi(self) -> dict[str, Any] | None:
        r = httpx.get(f"{self.endpoint.api_url}/unmanic/swagger/swagger.json", timeout=self.timeout)
        if r.status_code != 200:
            raise TargetError(f"Unmanic's OpenAPI document: expected 200, got {r.status_code}", status=r.status_code)
        return r.json()

    def invalid_requests(self, account: Account | None = None, big: int = 70_000) -> list[InvalidRequest]:
        def post(path: str, body: bytes) -> Any:
            return lambda c: c.post(path, content=body)

        return [
            InvalidRequest("queue a path that is not a string", post("/pending/create", b'{"path": 5}'), "path"),
            InvalidRequest("malformed JSON", post("/pending/create", b'{"path": '), None),
            InvalidRequest("empty body", post("/pending/tasks", b""), None),
        ]

    def fuzz_excluded(self) -> tuple[str, ...]:
        """Operations the fuzzer leaves alone: they reach the internet (plugin repositories,
        support site), end the session, rewrite the platform's own setup or delete its data."""
        return ("/plugins/install", "/plugins/repos", "/plugins/update", "/plugins/remove", "/plugins/installable",
                "/session", "/settings/write", "/settings/library", "/settings/worker_group", "/settings/link",
                "/upload", "/docs/logs", "/pending/rescan", "/workers/worker/terminate", "/history/reprocess")

    def fuzz_options(self, open_account: Any) -> dict[str, Any]:
        """Unmanic has no auth; its schema's server is /unmanic/api/v2. Operations that reach the
        internet, end the session, rewrite the setup or delete data are left alone."""
        schema = self.openapi() or {}
        skip = self.fuzz_excluded()
        excluded = [f"{m.upper()} {path}" for path, item in (schema.get("paths") or {}).items() for m in item
                    if m.lower() in ("get", "post", "put", "delete", "patch") and path.startswith(skip)]
        return {"base_url": self.endpoint.api_url + API_PREFIX, "exclude_operations": tuple(excluded)}

    # -- hold the workers (the API stays up: they share a process) -----------------------------
    def hold_workers(self) -> "WorkersPaused":
        return WorkersPaused(self.client)


@dataclass
class WorkersPaused:
    """Unmanic's own pause of every worker (SIGSTOP of running encodes; no new task picked up)."""

    client: UnmanicClient

    def describe(self) -> str:
        return "every Unmanic worker paused (its API stays up)"

    def inject(self) -> None:
        self.client.pause_all()

    def heal(self) -> None:
        self.client.resume_all()


def _measure(path: Path) -> tuple[float, int, int] | None:
    """What an input measures, so its transcode can be held to it; None if ffprobe cannot read it."""
    from renderchaos.probes.media import ffprobe

    try:
        info = ffprobe(path)
    except Exception:  # noqa: BLE001 - a corrupt input promises nothing
        return None
    if not info.width or not info.height or not info.duration:
        return None
    return (float(info.duration), int(info.width), int(info.height))
