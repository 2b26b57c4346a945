"""Streaming downloads through the render pipeline's remux pipe (runbook P).

The cap on concurrent remuxes is per API process (``REMUX_MAX_CONCURRENT``); a
full cap answers 503 + Retry-After and does not queue. When the client goes
away Starlette cancels the stream and :mod:`refstack.render.remux` kills the
ffmpeg group at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator

from refstack.render.errors import Busy, InputError
from refstack.render.remux import RemuxLimiter, open_remux


class RemuxBusy(Exception):
    """Every remux slot is taken (API answers 503 with Retry-After)."""


class OutputGone(Exception):
    """The job's output file is missing or unreadable."""


class Downloads:
    """One per API process: the cap and the stream factory."""

    def __init__(self, max_concurrent: int) -> None:
        self.max_concurrent = max_concurrent
        self.limiter = RemuxLimiter(max_concurrent, retry_after=2.0)

    @property
    def active(self) -> int:
        return self.limiter.active

    def open(self, path: Path) -> AsyncIterator[bytes]:
        """Reserve a slot now (:class:`RemuxBusy` if none) and return the byte stream."""
        try:
            return open_remux(path, limiter=self.limiter)
        except Busy as exc:
            raise RemuxBusy(exc.message or f"all {self.max_concurrent} remux slots are busy") from exc
        except InputError as exc:
            raise OutputGone(exc.message) from exc
