"""renderchaos_h264: transcode each task to H.264/AAC MP4 with one ffmpeg command.

A local Unmanic plugin for the renderchaos suite (Unmanic's stock plugins are downloaded from
the internet). It does what an ordinary transcoding plugin does and nothing more, so the suite
observes Unmanic's own behaviour: no ffprobe gate before the encode, no timeout, no retry.

Runners (Unmanic plugin API version 2, see info.json "compatibility"):

- ``on_library_management_file_test``: a library scan or inotify event queues a media file
  unless ffprobe shows it is already H.264 (+ AAC or no audio) in MP4, or cannot read it.
  Files queued with ``POST /unmanic/api/v2/pending/create`` skip this test.
- ``on_worker_process``: give the worker one ffmpeg command. Unmanic runs it, reads its
  stdout (stderr merged) line by line for progress and the task log; a non-zero exit marks
  the task failed. The output goes to the task's cache file with a ``.mp4`` extension; on
  success Unmanic moves it next to the source as ``<stem>.mp4``.

Only the standard library and ffmpeg/ffprobe on PATH are used.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from typing import Any, Callable

PLUGIN_ID = "renderchaos_h264"
MEDIA_EXTENSIONS = {".mp4", ".m4v", ".mkv", ".mov", ".avi", ".webm", ".ts", ".mpg", ".mpeg", ".flv"}
PROBE_TIMEOUT_S = 30.0

logger = logging.getLogger(f"Unmanic.Plugin.{PLUGIN_ID}")


def probe(path: str) -> dict[str, Any] | None:
    """ffprobe's JSON for ``path``, or None when ffprobe cannot read it."""
    cmd = ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams", path]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=PROBE_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        logger.warning("ffprobe failed on %s: %s", path, exc)
        return None
    if proc.returncode != 0:
        return None
    try:
        return json.loads(proc.stdout)
    except ValueError:
        return None


def is_target_format(info: dict[str, Any]) -> bool:
    """True when the file is already what on_worker_process would produce."""
    streams = info.get("streams", [])
    video = [s.get("codec_name") for s in streams if s.get("codec_type") == "video"]
    audio = [s.get("codec_name") for s in streams if s.get("codec_type") == "audio"]
    container = info.get("format", {}).get("format_name", "")
    return "mp4" in container.split(",") and video[:1] == ["h264"] and all(a == "aac" for a in audio)


def on_library_management_file_test(data: dict[str, Any]) -> None:
    """Queue media files that are not yet H.264/AAC MP4 (library scan and inotify only)."""
    path = data["path"]
    if os.path.splitext(path)[1].lower() not in MEDIA_EXTENSIONS:
        return  # not a media file: leave the decision to other plugins (none: not queued)
    info = probe(path)
    if info is None:
        data["issues"].append({"id": PLUGIN_ID, "message": f"ffprobe cannot read '{path}'; not queued"})
        data["add_file_to_pending_tasks"] = False
    elif is_target_format(info):
        data["issues"].append({"id": PLUGIN_ID, "message": f"already H.264/AAC MP4 - '{path}'"})
        data["add_file_to_pending_tasks"] = False
    else:
        data["add_file_to_pending_tasks"] = True


def progress_parser(default_parser: Callable[..., dict], duration_s: float | None) -> Callable[..., dict]:
    """Turn ffmpeg's ``-progress`` lines into the percent that Unmanic's own parser expects.

    Unmanic's default parser takes a line holding a bare number (the percent) and ignores any
    other line; it also reports whether the worker was paused or killed, so every call goes
    through it.
    """

    def parse(line_text: str, *args: Any, **kwargs: Any) -> dict:
        key, _, value = str(line_text).strip().partition("=")
        if key == "out_time_us" and value.isdigit() and duration_s:
            percent = min(100.0, int(value) / 1e6 / duration_s * 100.0)
            return default_parser(f"{percent:.1f}", *args, **kwargs)
        return default_parser(line_text, *args, **kwargs)

    return parse


def on_worker_process(data: dict[str, Any]) -> None:
    """Ask the worker to run ffmpeg: file_in -> H.264 (libx264, fast) + AAC in MP4."""
    file_out = os.path.splitext(data["file_out"])[0] + ".mp4"
    data["file_out"] = file_out
    data["exec_command"] = [
        "ffmpeg", "-hide_banner", "-nostdin", "-y",
        "-i", data["file_in"],
        "-map", "0:v:0", "-map", "0:a:0?",
        "-c:v", "libx264", "-preset", "fast", "-pix_fmt", "yuv420p",
        "-c:a", "aac",
        "-movflags", "+faststart",
        "-progress", "pipe:1", "-nostats",
        file_out,
    ]
    info = probe(data["file_in"]) or {}
    try:
        duration_s = float(info.get("format", {}).get("duration", 0)) or None
    except (TypeError, ValueError):
        duration_s = None
    if data.get("command_progress_parser"):
        data["command_progress_parser"] = progress_parser(data["command_progress_parser"], duration_s)
