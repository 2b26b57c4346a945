"""Render errors: one small tree, every error carries a stable ``code``.

    RenderError(code, message, detail)
    ├── InputError                    an input asset failed the ffprobe gate
    │   ├── InputNotFound             code ``input_not_found``        (R §一.1 错误1)
    │   ├── InputPermissionDenied     code ``input_permission_denied`` (R §一.1 错误1)
    │   └── InvalidMedia              code ``invalid_media``           (R §一.1 错误2)
    ├── RenderTimeout                 code ``timeout``  (total deadline or stalled progress, R §一.3)
    ├── StorageFull                   code ``storage_full``            (R §八 "完成但视频缺失")
    ├── ResourceExhausted             code ``resource_exhausted``      (R §一.2 OOM)
    ├── RenderFailed                  code ``render_failed``  everything else (ffmpeg stderr in detail)
    └── Busy                          code ``busy``  remux concurrency cap reached (API answers 503)

Errors survive pickling (Celery moves them between processes): ``__reduce__``
rebuilds them from their fields. ``detail`` is a short string (usually the
tail of ffmpeg's stderr); extra keyword fields are kept as attributes.
"""

from __future__ import annotations

from typing import Any


class RenderError(Exception):
    """Root of every render-pipeline error."""

    code: str = "render_failed"

    def __init__(self, code: str | None = None, message: str = "", detail: str = "", **fields: Any) -> None:
        self.code = code or type(self).code
        self.message = message
        self.detail = detail
        self.fields = dict(fields)
        for key, value in fields.items():
            setattr(self, key, value)
        super().__init__(message)

    def __str__(self) -> str:
        if self.detail:
            return f"[{self.code}] {self.message}\n--- ffmpeg said ---\n{self.detail}"
        return f"[{self.code}] {self.message}"

    def __reduce__(self):  # type: ignore[override]
        return (_rebuild, (type(self), self.code, self.message, self.detail, self.fields))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form for job records."""
        return {"code": self.code, "message": self.message, "detail": self.detail,
                **{k: v for k, v in self.fields.items() if isinstance(v, (str, int, float, bool, type(None)))}}


def _rebuild(cls: type[RenderError], code: str, message: str, detail: str, fields: dict[str, Any]) -> RenderError:
    err = cls.__new__(cls)
    RenderError.__init__(err, code, message, detail, **fields)
    return err


class _Fixed(RenderError):
    """Subclasses with a fixed code are built as ``Cls(message, detail="", **fields)``."""

    def __init__(self, message: str = "", detail: str = "", **fields: Any) -> None:
        super().__init__(type(self).code, message, detail, **fields)


class InputError(_Fixed):
    """An input asset did not pass the probe gate. ``path`` names it."""

    code = "invalid_media"


class InputNotFound(InputError):
    code = "input_not_found"


class InputPermissionDenied(InputError):
    code = "input_permission_denied"


class InvalidMedia(InputError):
    code = "invalid_media"


class RenderTimeout(_Fixed):
    """Total deadline exceeded, or the progress watchdog saw no advance (``reason``)."""

    code = "timeout"


class StorageFull(_Fixed):
    code = "storage_full"


class ResourceExhausted(_Fixed):
    code = "resource_exhausted"


class RenderFailed(_Fixed):
    code = "render_failed"


class Busy(_Fixed):
    """The remux concurrency cap is full; ``retry_after`` seconds is the hint for Retry-After."""

    code = "busy"
