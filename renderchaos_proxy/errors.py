"""Errors of renderchaos_proxy: the server's API errors and the client's exception tree.

Server side: :class:`ApiError` is what a handler raises; the API answers it as
``{"error": message, "status": status}`` with Toxiproxy's exact messages (below).

Client side: every failure of :class:`~renderchaos_proxy.client.ToxiproxyClient`
is a :class:`ToxiproxyError`; a lower-level error (httpx) is mapped at the client
with ``raise ... from exc``. This package imports nothing from the harness: the
harness maps these to its own errors where it calls the client.

    ToxiproxyError        the Toxiproxy API could not do what was asked (status, url)
    ├── Unreachable       no HTTP answer at all: refused, timed out (status None)
    ├── BadRequest        400: a body, field, stream or toxic type was refused
    ├── NotFound          404: no such proxy or toxic
    ├── Conflict          409: the proxy or toxic already exists
    ├── ServerError       5xx, e.g. 500 for a listen address already in use
    └── HealError         a ``down()`` / ``toxic()`` block could not undo its fault
                          (also proxy, toxic; the failed call is ``__cause__``)

Other statuses, and an answer that is not JSON, raise :class:`ToxiproxyError`
itself. All of them survive pickling: ``args`` holds only the message and the
fields live in ``__dict__``.
"""

from __future__ import annotations

BAD_REQUEST_BODY = "bad request body"
MISSING_FIELD = "missing required field"
PROXY_NOT_FOUND = "proxy not found"
PROXY_EXISTS = "proxy already exists"
INVALID_STREAM = "stream was invalid, can be either upstream or downstream"
INVALID_TOXIC_TYPE = "invalid toxic type"
TOXIC_EXISTS = "toxic already exists"
TOXIC_NOT_FOUND = "toxic not found"


class ApiError(Exception):
    """An error the API answers as ``{"error": message, "status": status}``."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def __reduce__(self):  # survive pickling with both fields
        return (type(self), (self.message, self.status))


# -- client ---------------------------------------------------------------------------------
class ToxiproxyError(Exception):
    """Root of the client's errors. Fields: ``status`` (HTTP status or None), ``url``."""

    def __init__(self, message: str, status: int | None = None, url: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.url = url

    def __str__(self) -> str:
        return self.message


class Unreachable(ToxiproxyError):
    """The API gave no HTTP answer (connection refused, timeout, reset); ``status`` is None."""


class BadRequest(ToxiproxyError):
    """400: the API refused the request body, a field, a stream or a toxic type."""


class NotFound(ToxiproxyError):
    """404: no such proxy or toxic."""


class Conflict(ToxiproxyError):
    """409: a proxy or toxic of that name already exists."""


class ServerError(ToxiproxyError):
    """5xx: the server could not do it, e.g. the listen address is already in use."""


class HealError(ToxiproxyError):
    """A fault context manager could not undo its fault. Extra fields: ``proxy``, ``toxic``."""

    def __init__(self, message: str, status: int | None = None, url: str | None = None,
                 proxy: str | None = None, toxic: str | None = None) -> None:
        super().__init__(message, status, url)
        self.proxy = proxy
        self.toxic = toxic


_BY_STATUS: dict[int, type[ToxiproxyError]] = {400: BadRequest, 404: NotFound, 409: Conflict}


def error_for_status(status: int) -> type[ToxiproxyError]:
    """The class the client raises for an HTTP error status."""
    if status >= 500:
        return ServerError
    return _BY_STATUS.get(status, ToxiproxyError)
