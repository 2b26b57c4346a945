"""The ffprobe gate: every input is checked before a render starts.

R §一.1 错误1 ("No such file or directory"): missing -> ``input_not_found``,
unreadable -> ``input_permission_denied``. R §一.1 错误2 ("Invalid data found
when processing input"): ``ffprobe input.mp4`` first -> ``invalid_media``; a file
that decodes *with errors* is ``damaged`` and the render retries it once with
``-err_detect ignore_err`` (使用更宽容的解码器).
"""

from __future__ import annotations

import json
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from refstack.render import proc
from refstack.render.errors import InputNotFound, InputPermissionDenied, InvalidMedia, RenderTimeout
from refstack.render.spec import MAX_DIMENSION, MIN_DIMENSION

Role = Literal["video", "audio"]
#: Codec names ffprobe reports for streams it cannot decode.
_UNDECODABLE = {"", "none", "unknown", "bin_data", "dvd_nav_packet", "timed_id3"}


@dataclass(frozen=True)
class ProbeResult:
    """What the gate learned about one input."""

    path: Path
    role: str
    format_name: str
    duration: float
    codec: str
    width: int | None = None
    height: int | None = None
    #: Decodes, but with errors: render it with tolerant decoding (one retry).
    damaged: bool = False
    decode_errors: str = ""

    @property
    def verdict(self) -> str:
        """``ok`` or ``partly_damaged`` (errors are raised, not returned)."""
        return "partly_damaged" if self.damaged else "ok"


def _uri(path: Path) -> str:
    # "file:" stops ffmpeg from reading "pipe:1" or "concat:..." as protocols.
    return "file:" + str(path)


def check_readable(path: Path, role: str = "input") -> os.stat_result:
    """Existence and permission checks, without ffprobe."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputNotFound(f"{role} asset {str(path)!r} does not exist (R §一.1: No such file or directory); "
                            "check the path and that the volume is mounted", path=str(path)) from None
    except PermissionError as exc:
        raise InputPermissionDenied(f"{role} asset {str(path)!r} cannot be accessed: {exc}", path=str(path)) from None
    if not stat.S_ISREG(st.st_mode):
        raise InvalidMedia(f"{role} asset {str(path)!r} is not a regular file", path=str(path))
    # Root can open a mode-000 file; treat "no read bit for anyone" as unreadable anyway, so the
    # outcome does not depend on which uid the worker happens to run as.
    if st.st_mode & (stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH) == 0:
        raise InputPermissionDenied(
            f"{role} asset {str(path)!r} is not readable (mode {stat.S_IMODE(st.st_mode):03o}); "
            "fix its permissions (R §一.1: chmod 644)", path=str(path), mode=stat.S_IMODE(st.st_mode))
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except PermissionError as exc:
        raise InputPermissionDenied(f"{role} asset {str(path)!r} is not readable: {exc}", path=str(path)) from None
    except OSError as exc:
        raise InvalidMedia(f"{role} asset {str(path)!r} cannot be read: {exc}", path=str(path)) from None
    return st


def probe_input(
    path: Path | str,
    role: Role = "video",
    *,
    timeout: float = 60.0,
    deep: bool = True,
    ffprobe: str = "ffprobe",
    ffmpeg: str = "ffmpeg",
) -> ProbeResult:
    """Gate one input. Raises an :class:`InputError` subclass, or returns a :class:`ProbeResult`.

    ``role`` says what the render needs from it: a video stream (background) or
    an audio stream. With ``deep`` the chosen stream is fully decoded once to
    tell clean, partly damaged and undecodable files apart.
    """
    path = Path(path).absolute()
    st = check_readable(path, role)
    if st.st_size == 0:
        raise InvalidMedia(f"{role} asset {str(path)!r} is empty (0 bytes)", path=str(path))
    try:
        res = proc.run([ffprobe, "-hide_banner", "-v", "error", "-show_format", "-show_streams",
                        "-of", "json", _uri(path)], timeout=timeout, keep_stdout=True, what="ffprobe")
    except RenderTimeout as exc:
        raise InvalidMedia(f"ffprobe of {role} asset {str(path)!r} did not finish within {timeout:.0f}s",
                           path=str(path)) from exc
    if res.returncode != 0:
        raise InvalidMedia(f"{role} asset {str(path)!r} is not readable media (ffprobe exit {res.returncode})",
                           res.stderr_tail(), path=str(path))
    try:
        info = json.loads(res.stdout or b"{}")
    except ValueError:
        info = {}
    streams = info.get("streams") or []
    fmt = info.get("format") or {}
    wanted = [s for s in streams if s.get("codec_type") == role
              and not (s.get("disposition") or {}).get("attached_pic")]
    if not wanted:
        kinds = sorted({str(s.get("codec_type")) for s in streams}) or ["none"]
        raise InvalidMedia(f"{role} asset {str(path)!r} has no {role} stream (found: {', '.join(kinds)})",
                           res.stderr_tail(), path=str(path))
    s = wanted[0]
    codec = str(s.get("codec_name") or "")
    if codec in _UNDECODABLE:
        raise InvalidMedia(f"{role} asset {str(path)!r}: codec {codec or s.get('codec_tag_string')!r} "
                           "is not supported (no decoder)", path=str(path))
    width = height = None
    if role == "video":
        width, height = int(s.get("width") or 0), int(s.get("height") or 0)
        if not (MIN_DIMENSION <= width <= MAX_DIMENSION and MIN_DIMENSION <= height <= MAX_DIMENSION):
            raise InvalidMedia(f"video asset {str(path)!r} has absurd dimensions {width}x{height} "
                               f"(accepted: {MIN_DIMENSION}..{MAX_DIMENSION} each side)",
                               path=str(path), width=width, height=height)
    duration = _duration(fmt, s)
    if not (duration > 0 and math.isfinite(duration)):
        raise InvalidMedia(f"{role} asset {str(path)!r} has no usable duration ({duration})", path=str(path))
    damaged, errors = False, ""
    if deep:
        damaged, errors = _decode_check(path, role, duration, timeout, ffmpeg)
    return ProbeResult(path=path, role=role, format_name=str(fmt.get("format_name", "")), duration=duration,
                       codec=codec, width=width, height=height, damaged=damaged, decode_errors=errors)


def _duration(fmt: dict, stream: dict) -> float:
    for raw in (stream.get("duration"), fmt.get("duration")):
        try:
            value = float(raw)
        except (TypeError, ValueError):
            continue
        if value > 0:
            return value
    return 0.0


def _decode_check(path: Path, role: str, duration: float, timeout: float, ffmpeg: str) -> tuple[bool, str]:
    sel = "0:v:0" if role == "video" else "0:a:0"
    try:
        res = proc.run([ffmpeg, "-hide_banner", "-v", "error", "-i", _uri(path), "-map", sel, "-f", "null", "-"],
                       timeout=timeout, stall_timeout=timeout, what="decode check")
    except RenderTimeout as exc:
        raise InvalidMedia(f"{role} asset {str(path)!r} could not be decoded within {timeout:.0f}s",
                           path=str(path)) from exc
    errors = res.stderr.strip()
    decoded = res.out_us / 1e6
    if decoded <= 0:
        raise InvalidMedia(f"{role} asset {str(path)!r} decodes to nothing (ffprobe claimed {duration:.2f}s)",
                           "\n".join(errors.splitlines()[-15:]), path=str(path))
    if res.returncode != 0 or errors:
        return True, "\n".join(errors.splitlines()[-15:])
    return False, ""
