"""A small typed client for Unmanic's v2 HTTP API: the calls renderchaos needs, nothing more.

Standalone (httpx only): no adapter, no stack. Every call has a bounded timeout; any answer
other than 200 raises :class:`renderchaos.errors.TargetError` carrying ``status``, ``method``,
``url`` and ``body`` (Unmanic's JSON error, traceback included: it runs Tornado with
``debug=True``). A dropped connection (Unmanic closes it without a response for an unknown
endpoint) is a ``TargetError`` with ``status=None``.

What Unmanic's API does and does not tell (docs/findings/unmanic-notes.md has the evidence):

- A task lives in the ``tasks`` table while it is ``pending``, ``in_progress`` or ``processed``;
  the post-processor then writes a history row (``completed tasks``) and deletes the task.
  Task ids are reused once deleted, and the history row has its own id, so a task is found
  in the history by its file's basename (``task_label``), newer than a history id taken
  before the task was created: use unique basenames.
- Success is the ffmpeg exit status only. The output is ``<source dir>/<source stem>.mp4``
  (the source is removed when the name differs, overwritten when it is already ``.mp4``).
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from renderchaos.errors import TargetError
from renderchaos.wait import Deadline, Poll, wait_for

API_PREFIX = "/unmanic/api/v2"
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=2.0)
UPLOAD_TIMEOUT = httpx.Timeout(60.0, connect=2.0)
PLUGIN_DIR = Path(__file__).resolve().parent / "plugin" / "renderchaos_h264"
PLUGIN_ID = "renderchaos_h264"

# Unmanic answers 500 with this reason when none of the asked task ids exists (any more).
_NO_SUCH_TASKS = "500: Failed to fetch pending tasks status"


@dataclass(frozen=True)
class Task:
    """A row of Unmanic's task queue (``pending``, ``in_progress`` or ``processed``)."""

    id: int
    abspath: str
    status: str
    priority: int
    type: str


@dataclass(frozen=True)
class Worker:
    """One worker thread as ``GET /workers/status`` shows it."""

    id: str
    name: str
    idle: bool
    paused: bool
    current_task: int | None
    current_file: str
    current_command: str
    percent: float
    pid: int | None
    elapsed_s: int


@dataclass(frozen=True)
class CompletedTask:
    """A history row: written once the post-processor is done with a task."""

    id: int
    task_label: str
    success: bool
    start_time: float
    finish_time: float


@dataclass(frozen=True)
class WorkerGroup:
    id: int
    name: str
    number_of_workers: int


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def plugin_zip(plugin_dir: Path = PLUGIN_DIR) -> bytes:
    """The plugin folder as the ZIP that ``POST /upload/plugin/file`` installs (files at the root)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(plugin_dir.iterdir()):
            if path.is_file() and path.suffix in {".json", ".py"}:
                zf.write(path, path.name)
    return buf.getvalue()


def output_path(source: str) -> str:
    """Where a successful task leaves its output: next to the source, extension ``.mp4``."""
    return os.path.splitext(source)[0] + ".mp4"


class UnmanicClient:
    """Unmanic's v2 API at ``base_url`` (for example ``http://127.0.0.1:8888``)."""

    def __init__(self, base_url: str, *, timeout: httpx.Timeout = DEFAULT_TIMEOUT,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url + API_PREFIX, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "UnmanicClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
              files: dict[str, Any] | None = None, timeout: httpx.Timeout | None = None) -> Any:
        kwargs: dict[str, Any] = {}
        if raw is not None:
            kwargs["content"] = raw
        elif body is not None:
            kwargs["content"] = json.dumps(body).encode()
        if files is not None:
            kwargs["files"] = files
        if timeout is not None:
            kwargs["timeout"] = timeout
        url = self.base_url + API_PREFIX + path
        try:
            resp = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise TargetError(
                f"Unmanic {method} {url}: no usable answer ({type(exc).__name__}: {exc}); expected an HTTP "
                "response. Is Unmanic up on that port? An unknown /unmanic/api/v2/<endpoint> also drops the "
                "connection without a response.", status=None, method=method, url=url, body="") from exc
        if resp.status_code != 200:
            raise TargetError(
                f"Unmanic {method} {url} answered {resp.status_code}, expected 200; body: {resp.text[:2000]}",
                status=resp.status_code, method=method, url=url, body=resp.text)
        try:
            return resp.json()
        except ValueError as exc:
            raise TargetError(f"Unmanic {method} {url} answered 200 with a body that is not JSON: "
                              f"{resp.text[:500]!r}", status=200, method=method, url=url,
                              body=resp.text) from exc

    # -- health, settings -------------------------------------------------------------------
    def version(self) -> str:
        """``GET /version/read`` -> ``{"version": "0.4.1~1c324b8"}``: the cheapest readiness probe."""
        return str(self._call("GET", "/version/read")["version"])

    def settings(self) -> dict[str, Any]:
        return dict(self._call("GET", "/settings/read")["settings"])

    def write_settings(self, **items: Any) -> None:
        """``POST /settings/write``; note: Unmanic then writes ALL its settings to settings.json."""
        self._call("POST", "/settings/write", {"settings": items})

    def libraries(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/settings/libraries")["libraries"])

    def write_library(self, library_id: int, path: str, *, enable_scanner: bool = False,
                      enable_inotify: bool = False, enabled_plugins: list[str] | None = None) -> None:
        """Set a library's path, scanner and inotify flags and (if given) its enabled plugins.

        Library 1's path is forced back to the ``library_path`` setting on every read: change
        that setting (or the env var before start) to move it.
        """
        body: dict[str, Any] = {"library_config": {"id": library_id, "path": path,
                                                   "enable_scanner": enable_scanner,
                                                   "enable_inotify": enable_inotify}}
        if enabled_plugins is not None:
            body["plugins"] = {"enabled_plugins": [{"plugin_id": p} for p in enabled_plugins]}
        self._call("POST", "/settings/library/write", body)

    # -- plugins ----------------------------------------------------------------------------
    def install_plugin(self, zip_bytes: bytes | None = None, filename: str = f"{PLUGIN_ID}.zip") -> None:
        """``POST /upload/plugin/file`` (multipart): unzip into the plugins dir and register it."""
        data = plugin_zip() if zip_bytes is None else zip_bytes
        self._call("POST", "/upload/plugin/file", files={"fileName": (filename, data, "application/zip")},
                   timeout=UPLOAD_TIMEOUT)

    def installed_plugins(self) -> list[str]:
        res = self._call("POST", "/plugins/installed", {"start": 0, "length": 100})
        return [str(p["plugin_id"]) for p in res["results"]]

    # -- workers ----------------------------------------------------------------------------
    def worker_groups(self) -> list[WorkerGroup]:
        return [WorkerGroup(int(g["id"]), str(g["name"]), int(g["number_of_workers"]))
                for g in self._call("GET", "/settings/worker_groups")["worker_groups"]]

    def set_worker_count(self, count: int, name: str = "renderchaos") -> WorkerGroup:
        """Create the first worker group or resize it. A fresh Unmanic has NO group: 0 workers."""
        groups = self.worker_groups()
        body = {"id": groups[0].id if groups else None, "locked": False,
                "name": groups[0].name if groups else name, "number_of_workers": count,
                "worker_event_schedules": [], "tags": []}
        self._call("POST", "/settings/worker_group/write", body)
        return self.worker_groups()[0]

    def workers(self) -> list[Worker]:
        out = []
        for w in self._call("GET", "/workers/status")["workers_status"]:
            sub = w.get("subprocess") or {}
            out.append(Worker(id=str(w["id"]), name=str(w["name"]), idle=bool(w["idle"]),
                              paused=bool(w["paused"]), current_task=_int_or_none(w.get("current_task")),
                              current_file=str(w.get("current_file") or ""),
                              current_command=str(w.get("current_command") or ""),
                              percent=_float(sub.get("percent")), pid=_int_or_none(sub.get("pid")),
                              elapsed_s=int(_float(sub.get("elapsed")))))
        return out

    def pause_worker(self, worker_id: str) -> None:
        self._call("POST", "/workers/worker/pause", {"worker_id": worker_id})

    def resume_worker(self, worker_id: str) -> None:
        self._call("POST", "/workers/worker/resume", {"worker_id": worker_id})

    def terminate_worker(self, worker_id: str) -> None:
        """Kill the worker's process tree; its task is recorded as failed ("WORKER TERMINATED!")."""
        self._call("DELETE", "/workers/worker/terminate", {"worker_id": worker_id})

    def pause_all(self) -> None:
        self._call("POST", "/workers/worker/pause/all")

    def resume_all(self) -> None:
        self._call("POST", "/workers/worker/resume/all")

    def terminate_all(self) -> None:
        self._call("DELETE", "/workers/worker/terminate/all")

    # -- tasks ------------------------------------------------------------------------------
    def create_task(self, path: str, library_id: int = 1) -> Task:
        """``POST /pending/create``: queue ONE file, skipping the library's file-test plugins."""
        t = self._call("POST", "/pending/create", {"path": path, "library_id": library_id})
        return Task(int(t["id"]), str(t["abspath"]), str(t["status"]), int(t["priority"]), str(t["type"]))

    def pending(self, length: int = 100) -> list[Task]:
        """Tasks in status ``pending`` only (``in_progress``/``processed`` ones are not listed)."""
        res = self._call("POST", "/pending/tasks", {"start": 0, "length": length})
        return [Task(int(t["id"]), str(t["abspath"]), str(t["status"]), int(t["priority"]), str(t["type"]))
                for t in res["results"]]

    def task_status(self, ids: list[int]) -> list[Task]:
        """The queue rows among ``ids`` in any status; [] once they left the queue (or never were)."""
        try:
            res = self._call("POST", "/pending/status/get", {"id_list": ids})
        except TargetError as exc:
            if getattr(exc, "status", None) == 500 and _NO_SUCH_TASKS in getattr(exc, "body", ""):
                return []
            raise
        return [Task(int(t["id"]), str(t["abspath"]), str(t["status"]), int(t["priority"]), str(t["type"]))
                for t in res["results"]]

    def delete_tasks(self, ids: list[int]) -> None:
        """``DELETE /pending/tasks``: drop queue rows (a running one keeps running, see the notes)."""
        self._call("DELETE", "/pending/tasks", {"id_list": ids})

    def rescan(self) -> None:
        """``POST /pending/rescan``: a full library scan (file-test plugins decide what is queued)."""
        self._call("POST", "/pending/rescan")

    # -- history ----------------------------------------------------------------------------
    def history(self, search: str = "", status: str = "all", length: int = 100) -> list[CompletedTask]:
        """Completed tasks, newest first; ``search`` matches the basename, ``status`` all|success|failed."""
        res = self._call("POST", "/history/tasks", {"start": 0, "length": length, "search_value": search,
                                                    "status": status, "order_by": "id",
                                                    "order_direction": "desc"})
        return [CompletedTask(int(t["id"]), str(t["task_label"]), bool(t["task_success"]),
                              _float(t["start_time"]), _float(t["finish_time"])) for t in res["results"]]

    def last_history_id(self) -> int:
        rows = self.history(length=1)
        return rows[0].id if rows else 0

    def task_log(self, completed_id: int) -> str:
        """The worker log of a completed task: runner, ffmpeg command line, ffmpeg's output."""
        return str(self._call("POST", "/history/task/log", {"task_id": completed_id})["command_log"])

    def delete_history(self, ids: list[int]) -> None:
        self._call("DELETE", "/history/tasks", {"id_list": ids})

    def completed(self, source: str, after_id: int) -> CompletedTask | None:
        """The history row of ``source`` newer than history id ``after_id``, if written yet."""
        label = os.path.basename(source)
        rows = [r for r in self.history(search=label) if r.task_label == label and r.id > after_id]
        return rows[0] if rows else None

    def wait_completed(self, source: str, after_id: int, timeout: float | Deadline,
                       poll: Poll = Poll(interval=0.5)) -> CompletedTask:
        """Poll the history until ``source`` has a row newer than ``after_id`` (terminal)."""
        return wait_for(lambda: self.completed(source, after_id),
                        f"Unmanic history row for {os.path.basename(source)} (newer than id {after_id})",
                        timeout, poll)
