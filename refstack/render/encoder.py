"""Pick a working H.264 encoder. R §一.1 错误3 ("Encoder not found"): fall back to libx264.

An encoder can be absent from this ffmpeg build (``Unknown encoder``) or listed
but unusable (h264_nvenc without a GPU: "Cannot load libcuda.so.1" at init).
Both are found by a tiny trial encode, cached per process.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from refstack.render import proc
from refstack.render.errors import RenderTimeout

FALLBACK_ENCODER = "libx264"
TRIAL_TIMEOUT = 20.0
_cache: dict[tuple[str, str], str | None] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class EncoderChoice:
    requested: str
    used: str
    #: Why ``used`` differs from ``requested`` (None when it does not).
    fallback_reason: str | None = None


def encoder_problem(name: str, ffmpeg: str = "ffmpeg") -> str | None:
    """None if ``name`` can encode a few frames here, else a one-line reason."""
    key = (ffmpeg, name)
    with _lock:
        if key in _cache:
            return _cache[key]
    try:
        res = proc.run([ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-f", "lavfi",
                        "-i", "color=c=black:s=256x256:r=25:d=0.2", "-frames:v", "3",
                        "-c:v", name, "-f", "null", "-"], timeout=TRIAL_TIMEOUT, what=f"{name} trial encode")
        problem = None if res.returncode == 0 else (res.stderr_tail(3).replace("\n", " | ") or
                                                    f"exit {res.returncode}")
    except RenderTimeout:
        problem = f"trial encode did not finish within {TRIAL_TIMEOUT:.0f}s"
    with _lock:
        _cache[key] = problem
    return problem


def select_encoder(requested: str, ffmpeg: str = "ffmpeg") -> EncoderChoice:
    """The requested encoder if it works, else libx264 with the reason recorded."""
    if requested == FALLBACK_ENCODER:
        return EncoderChoice(requested, requested)
    problem = encoder_problem(requested, ffmpeg)
    if problem is None:
        return EncoderChoice(requested, requested)
    return EncoderChoice(requested, FALLBACK_ENCODER, f"{requested} unusable: {problem}")
