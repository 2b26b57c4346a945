"""The reference render pipeline: template -> verified H.264/AAC MP4, and streaming remux.

Public API (what the worker and the API call)::

    render(spec: TemplateSpec, output, *, limits=RenderLimits(), on_progress=None) -> RenderResult
    probe_input(path, role="video", *, timeout=60, deep=True) -> ProbeResult
    select_encoder(requested) -> EncoderChoice
    RemuxLimiter(max_concurrent, retry_after=5.0); open_remux(path, limiter=...) -> AsyncIterator[bytes]

Errors: :class:`RenderError` and subclasses (errors.py), each with ``code``.
Runbook references ("R §一.3") point at render-platform-troubleshooting.zh.txt.
"""

from refstack.render.encoder import EncoderChoice, select_encoder
from refstack.render.errors import (
    Busy,
    InputError,
    InputNotFound,
    InputPermissionDenied,
    InvalidMedia,
    RenderError,
    RenderFailed,
    RenderTimeout,
    ResourceExhausted,
    StorageFull,
)
from refstack.render.pipeline import RenderResult, render
from refstack.render.probe import ProbeResult, probe_input
from refstack.render.spec import PRESETS, InvalidSpec, RenderLimits, TemplateSpec

__all__ = [
    "PRESETS", "Busy", "EncoderChoice", "InputError", "InputNotFound", "InputPermissionDenied", "InvalidMedia",
    "InvalidSpec", "ProbeResult", "RenderError", "RenderFailed", "RenderLimits", "RenderResult", "RenderTimeout",
    "ResourceExhausted", "StorageFull", "TemplateSpec", "probe_input", "render", "select_encoder",
]
