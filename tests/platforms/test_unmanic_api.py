"""The Unmanic client and the renderchaos_h264 plugin, without Unmanic: a mock transport that
answers as Unmanic 0.4.1 was observed to answer (docs/findings/unmanic-notes.md)."""

from __future__ import annotations

import importlib.util
import io
import json
import zipfile
from types import ModuleType
from typing import Any, Callable

import httpx
import pytest

from renderchaos.errors import TargetError, WaitTimeout
from renderchaos.platforms.unmanic import api
from renderchaos.wait import Poll

Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler) -> api.UnmanicClient:
    return api.UnmanicClient("http://127.0.0.1:1", transport=httpx.MockTransport(handler))


def unmanic_error(status: int, reason: str, traceback: list[str] | None = None) -> httpx.Response:
    return httpx.Response(status, json={"error": f"{status}: {reason}", "messages": {},
                                        "traceback": traceback or []})


def load_plugin() -> ModuleType:
    spec = importlib.util.spec_from_file_location("renderchaos_h264_plugin", api.PLUGIN_DIR / "plugin.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_create_task_posts_the_path_and_parses_the_task() -> None:
    seen: list[tuple[str, str, Any]] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append((req.method, req.url.path, json.loads(req.content)))
        return httpx.Response(200, json={"id": 7, "abspath": "/library/a.mkv", "priority": 7, "type": "local",
                                         "status": "pending", "library_id": 1})

    task = client(handler).create_task("/library/a.mkv")
    assert seen == [("POST", "/unmanic/api/v2/pending/create", {"path": "/library/a.mkv", "library_id": 1})]
    assert task == api.Task(id=7, abspath="/library/a.mkv", status="pending", priority=7, type="local")


def test_an_error_carries_status_and_body() -> None:
    tb = ["Traceback (most recent call last):\n", "Exception: Unable to fetch library with ID 99\n"]
    c = client(lambda req: unmanic_error(500, "Unable to fetch library with ID 99", tb))
    with pytest.raises(TargetError, match=r"answered 500, expected 200.*Unable to fetch library") as info:
        c.create_task("/library/a.mkv", library_id=99)
    assert info.value.status == 500 and "Traceback" in info.value.body


def test_a_dropped_connection_is_a_target_error_without_status() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=req)

    with pytest.raises(TargetError, match="no usable answer") as info:
        client(handler).version()
    assert info.value.status is None


def test_task_status_of_tasks_that_left_the_queue_is_empty_not_an_error() -> None:
    c = client(lambda req: unmanic_error(500, "Failed to fetch pending tasks status"))
    assert c.task_status([1]) == []
    other = client(lambda req: unmanic_error(500, "database is locked"))
    with pytest.raises(TargetError, match="database is locked"):
        other.task_status([1])


def history_handler(rows: list[dict[str, Any]]) -> Handler:
    def handler(req: httpx.Request) -> httpx.Response:
        body = json.loads(req.content)
        hits = [r for r in rows if body["search_value"] in r["task_label"]]
        return httpx.Response(200, json={"recordsTotal": len(rows), "recordsFiltered": len(hits),
                                         "successCount": 0, "failedCount": 0, "results": hits})
    return handler


ROW = {"task_label": "clip.mkv", "task_success": False, "start_time": 1.0, "finish_time": 2.0, "has_metadata": False}


def test_completed_finds_the_newest_row_of_that_basename_after_the_mark() -> None:
    rows = [{**ROW, "id": 9, "task_success": True}, {**ROW, "id": 8, "task_label": "clip.mkv.bak"},
            {**ROW, "id": 3}]
    c = client(history_handler(rows))
    assert c.completed("/library/clip.mkv", after_id=3) == api.CompletedTask(9, "clip.mkv", True, 1.0, 2.0)
    assert c.completed("/library/clip.mkv", after_id=9) is None, "an older run of the same file is not this one"


def test_wait_completed_names_the_file_when_it_times_out() -> None:
    c = client(history_handler([]))
    with pytest.raises(WaitTimeout, match="clip.mkv"):
        c.wait_completed("/library/clip.mkv", after_id=0, timeout=0.3, poll=Poll(interval=0.1))


def test_set_worker_count_creates_the_first_group() -> None:
    writes: list[dict[str, Any]] = []
    groups: list[dict[str, Any]] = []

    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.path.endswith("/settings/worker_group/write"):
            body = json.loads(req.content)
            writes.append(body)
            groups[:] = [{**body, "id": 1}]
            return httpx.Response(200, json={"success": True})
        return httpx.Response(200, json={"worker_groups": groups})

    group = client(handler).set_worker_count(2)
    assert writes[0]["id"] is None and writes[0]["number_of_workers"] == 2
    assert group == api.WorkerGroup(1, "renderchaos", 2)


def test_plugin_zip_holds_the_plugin_at_its_root_for_api_version_2() -> None:
    names = zipfile.ZipFile(io.BytesIO(api.plugin_zip())).namelist()
    assert sorted(names) == ["info.json", "plugin.py"]
    info = json.loads(zipfile.ZipFile(io.BytesIO(api.plugin_zip())).read("info.json"))
    assert info["id"] == api.PLUGIN_ID
    assert 2 in info["compatibility"], "without plugin API 2 Unmanic pauses every worker"


def test_plugin_asks_for_one_h264_aac_mp4_command(monkeypatch: pytest.MonkeyPatch) -> None:
    plugin = load_plugin()
    monkeypatch.setattr(plugin, "probe", lambda path: {"format": {"duration": "10.0"}})
    default_calls: list[str] = []

    def default_parser(line_text: str, *args: Any, **kwargs: Any) -> dict:
        default_calls.append(line_text)
        return {"killed": False, "paused": False, "percent": line_text}

    data = {"file_in": "/library/a.mkv", "file_out": "/cache/x/a-WORKING-1-1.mkv", "exec_command": [],
            "command_progress_parser": default_parser}
    plugin.on_worker_process(data)
    cmd = data["exec_command"]
    assert data["file_out"] == "/cache/x/a-WORKING-1-1.mp4" and cmd[-1] == data["file_out"]
    assert cmd[:1] == ["ffmpeg"] and cmd[cmd.index("-i") + 1] == "/library/a.mkv"
    assert cmd[cmd.index("-c:v") + 1] == "libx264" and cmd[cmd.index("-preset") + 1] == "fast"
    assert cmd[cmd.index("-c:a") + 1] == "aac"
    parse = data["command_progress_parser"]
    assert parse("out_time_us=2500000")["percent"] == "25.0"
    parse("frame=12")
    assert default_calls == ["25.0", "frame=12"]


def test_plugin_file_test_queues_only_media_not_yet_in_the_target_format(monkeypatch: pytest.MonkeyPatch) -> None:
    plugin = load_plugin()
    probes = {"/l/a.mkv": {"format": {"format_name": "matroska,webm"},
                           "streams": [{"codec_type": "video", "codec_name": "mpeg4"}]},
              "/l/b.mp4": {"format": {"format_name": "mov,mp4,m4a,3gp,3g2,mj2"},
                           "streams": [{"codec_type": "video", "codec_name": "h264"},
                                       {"codec_type": "audio", "codec_name": "aac"}]},
              "/l/c.mp4": None}
    monkeypatch.setattr(plugin, "probe", lambda path: probes[path])

    def decide(path: str) -> bool | None:
        data: dict[str, Any] = {"path": path, "issues": [], "add_file_to_pending_tasks": None}
        plugin.on_library_management_file_test(data)
        return data["add_file_to_pending_tasks"]

    assert [decide("/l/a.mkv"), decide("/l/b.mp4"), decide("/l/c.mp4"), decide("/l/notes.txt")] == \
        [True, False, False, None]
