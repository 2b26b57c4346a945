"""What to render (``TemplateSpec``) and how long it may take (``RenderLimits``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from refstack.render.errors import RenderError

#: x264 presets, fastest first. R §三: "调整preset (slow → medium/fast)": nothing slower than medium.
PRESETS: tuple[str, ...] = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium",
    "slow", "slower", "veryslow", "placebo",
)
SLOWEST_ALLOWED_PRESET = "medium"
#: Dimensions we render (and accept from inputs, see probe.py).
MIN_DIMENSION = 16
MAX_DIMENSION = 7680

_COLOUR = re.compile(r"^(?:[A-Za-z]{3,20}|(?:#|0x)[0-9A-Fa-f]{6}(?:[0-9A-Fa-f]{2})?)$")
_ENCODER = re.compile(r"^[A-Za-z0-9_]{1,40}$")


class InvalidSpec(RenderError, ValueError):
    """The template spec itself is unusable (API answers 400)."""

    code = "invalid_spec"

    def __init__(self, message: str = "", detail: str = "", **fields: object) -> None:
        super().__init__("invalid_spec", message, detail, **fields)


@dataclass(frozen=True)
class TemplateSpec:
    """A title card over a colour or a (looped) background video, with optional audio."""

    title: str
    background_color: str = "black"
    text_color: str = "white"
    width: int = 1280
    height: int = 720
    duration: float = 10.0
    fps: int = 25
    background_video: Path | None = None
    audio: Path | None = None
    encoder: str = "libx264"
    preset: str = "medium"
    crf: int = 23
    audio_bitrate: str = "128k"
    font_size: int | None = None

    def __post_init__(self) -> None:
        problems = []
        for name in ("background_color", "text_color"):
            if not _COLOUR.match(getattr(self, name)):
                problems.append(f"{name}={getattr(self, name)!r} is not a colour name or #RRGGBB")
        for name in ("width", "height"):
            v = getattr(self, name)
            if not (MIN_DIMENSION <= v <= MAX_DIMENSION) or v % 2:
                problems.append(f"{name}={v} must be even and within {MIN_DIMENSION}..{MAX_DIMENSION}")
        if not (0 < self.duration <= 4 * 3600):
            problems.append(f"duration={self.duration} must be in (0, 14400] seconds")
        if not (1 <= self.fps <= 120):
            problems.append(f"fps={self.fps} must be in 1..120")
        if not _ENCODER.match(self.encoder):
            problems.append(f"encoder={self.encoder!r} is not an encoder name")
        if self.preset not in PRESETS:
            problems.append(f"preset={self.preset!r} is not one of {PRESETS}")
        elif PRESETS.index(self.preset) > PRESETS.index(SLOWEST_ALLOWED_PRESET):
            # R §三: preset 合理? — slow presets turn a render into a timeout.
            problems.append(f"preset={self.preset!r} is slower than {SLOWEST_ALLOWED_PRESET!r}; use medium or faster")
        if not (0 <= self.crf <= 51):
            problems.append(f"crf={self.crf} must be in 0..51")
        if not re.match(r"^\d{2,3}k$", self.audio_bitrate):
            problems.append(f"audio_bitrate={self.audio_bitrate!r} must look like '128k'")
        if problems:
            raise InvalidSpec("; ".join(problems), problems=problems)
        for name in ("background_video", "audio"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, Path):
                object.__setattr__(self, name, Path(v))


@dataclass(frozen=True)
class RenderLimits:
    """Named time and size limits for one render (R §一.2, §一.3)."""

    #: Whole render, all segments, probe and final mux included.
    total_timeout: float = 1800.0
    #: No progress for this long = hung ffmpeg (SIGSTOP, cgroup freeze, dead NFS).
    stall_timeout: float = 30.0
    #: One ffprobe / decode check of one input.
    probe_timeout: float = 60.0
    #: R §一.2 方案1: render in 5-minute segments and concatenate.
    segment_seconds: float = 300.0
    #: Output verification: allowed |duration - spec.duration|.
    duration_tolerance: float = 0.5
    #: Fully decode inputs in the probe gate to find "partly damaged" files.
    deep_probe: bool = True
