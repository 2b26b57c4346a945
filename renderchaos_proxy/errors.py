"""Server-side API errors, with Toxiproxy's exact messages."""

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
