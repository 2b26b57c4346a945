"""Reading the Authorization header, and saying WHICH mistake a client made (R §二.1).

The runbook lists the usual causes of a 401: a key pasted with a space, a
deleted / expired key, ``Authorisation`` instead of ``Authorization``, and a
missing ``Bearer``. :func:`parse_authorization` is pure (headers in, credential
or :class:`AuthProblem` out) so it is unit-tested without a server; the lookup
of the credential itself happens in the app.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

from refstack.api.errors import ApiError
from refstack.broken import is_broken

_WS = re.compile(r"\s")


@dataclass(frozen=True)
class AuthProblem:
    reason: str  # stable machine name, also logged
    message: str


MISSING = AuthProblem("missing_header", "missing Authorization header: send 'Authorization: Bearer <key>'")
MISSPELT = AuthProblem("misspelt_header", "header 'Authorisation' is misspelt: the header is 'Authorization' "
                                          "(with a z), e.g. 'Authorization: Bearer <key>'")
NO_BEARER = AuthProblem("no_bearer", "Authorization header lacks the 'Bearer' keyword: "
                                     "send 'Authorization: Bearer <key>'")
WRONG_SCHEME = AuthProblem("wrong_scheme", "Authorization scheme must be 'Bearer': "
                                           "send 'Authorization: Bearer <key>'")
EMPTY = AuthProblem("empty_credential", "Authorization header has 'Bearer' but no key after it")
WHITESPACE = AuthProblem("whitespace", "the key contains whitespace (pasted with an extra space or line break?): "
                                       "remove it and send the key exactly as issued")
DELETED = AuthProblem("deleted_key", "this API key has been deleted: create a new key")
UNKNOWN = AuthProblem("unknown_key", "invalid API key: no such key (check that it was copied completely)")
EXPIRED = AuthProblem("expired_token", "the access token has expired: log in again at POST /api/v1/auth/login")
UNKNOWN_TOKEN = AuthProblem("unknown_token", "invalid access token: log in at POST /api/v1/auth/login")
GENERIC = "Invalid API key"

_KNOWN_SCHEMES = ("basic", "digest", "token", "apikey", "api-key", "key", "negotiate", "hoba", "mutual")


def parse_authorization(headers: Mapping[str, str]) -> str | AuthProblem:
    """The bearer credential, or the problem with how it was sent.

    ``headers`` is case-insensitive (Starlette ``Headers``) or a dict with
    lower-case names.
    """
    value = headers.get("authorization")
    if value is None:
        if headers.get("authorisation") is not None:
            return MISSPELT
        return MISSING
    raw = value
    value = value.strip()
    if not value:
        return MISSING
    scheme, sep, rest = value.partition(" ")
    if scheme.lower() != "bearer":
        if sep and scheme.lower() in _KNOWN_SCHEMES:
            return WRONG_SCHEME
        if scheme.lower().startswith("bearer") and not sep:
            return NO_BEARER if len(scheme) > len("bearer") else EMPTY  # "Bearerrk_..." glued
        return NO_BEARER
    if not rest.strip():
        return EMPTY
    # "Bearer  key", "Bearer key\t", "Bearer ke y": the single separator space is the only allowed one
    if rest != rest.strip() or _WS.search(rest) or raw != raw.strip():
        return WHITESPACE
    return rest


def unauthorized(problem: AuthProblem, *, ai: bool = False) -> ApiError:
    message = GENERIC if is_broken("api_auth_generic_message") else problem.message
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": 'Bearer realm="refstack"'})
