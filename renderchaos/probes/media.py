"""ffprobe checks of what the target produced (run on the host: target-agnostic)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from renderchaos.errors import ConfigError


@dataclass(frozen=True)
class MediaInfo:
    duration: float
    width: int
    height: int
    video_codec: str
    audio_codec: str | None
    size_bytes: int


def ffprobe(path: Path, timeout: float = 30.0) -> MediaInfo:
    """Probe a file; raises ValueError with ffprobe's message if it is not valid media."""
    exe = shutil.which("ffprobe")
    if exe is None:
        raise ConfigError("ffprobe is not installed on the host; run `bash scripts/setup.sh`")
    proc = subprocess.run([exe, "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)],
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise ValueError(f"ffprobe rejected {path.name}: {proc.stderr.strip()[:300]}")
    data = json.loads(proc.stdout)
    video = next((s for s in data.get("streams", []) if s.get("codec_type") == "video"), None)
    audio = next((s for s in data.get("streams", []) if s.get("codec_type") == "audio"), None)
    if video is None:
        raise ValueError(f"{path.name} has no video stream")
    return MediaInfo(duration=float(data.get("format", {}).get("duration") or 0.0),
                     width=int(video.get("width") or 0), height=int(video.get("height") or 0),
                     video_codec=video.get("codec_name", "?"), audio_codec=audio.get("codec_name") if audio else None,
                     size_bytes=path.stat().st_size)


def probe_bytes(data: bytes, suffix: str = ".mp4", tmp_dir: Path | None = None) -> MediaInfo:
    """Probe bytes through a temp file; pass the run's temp dir so a killed run's file is swept."""
    if tmp_dir is not None:
        tmp_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(prefix="renderchaos-probe-", suffix=suffix, dir=tmp_dir) as f:
        f.write(data)
        f.flush()
        return ffprobe(Path(f.name))


def output_problems(info: MediaInfo, duration: float, width: int, height: int,
                    tolerance: float = 0.5) -> list[str]:
    """What is wrong with a rendered output compared with its request (empty list: nothing)."""
    problems = []
    if abs(info.duration - duration) > tolerance:
        problems.append(f"duration {info.duration:.2f}s, expected {duration:.2f}s +/- {tolerance}s")
    if (info.width, info.height) != (width, height):
        problems.append(f"resolution {info.width}x{info.height}, expected {width}x{height}")
    if info.video_codec != "h264":
        problems.append(f"video codec {info.video_codec}, expected h264")
    if info.audio_codec not in (None, "aac"):
        problems.append(f"audio codec {info.audio_codec}, expected aac")
    if info.size_bytes <= 0:
        problems.append("empty file")
    return problems
