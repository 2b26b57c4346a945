"""R §二.1: each way of getting the header wrong has its own message."""

import pytest

from refstack.api import auth


def h(**headers):
    return {k.lower(): v for k, v in headers.items()}


@pytest.mark.parametrize("headers,problem", [
    ({}, auth.MISSING),
    ({"authorisation": "Bearer rk_x"}, auth.MISSPELT),
    ({"authorization": "rk_abc_def"}, auth.NO_BEARER),
    ({"authorization": "Bearerrk_abc"}, auth.NO_BEARER),
    ({"authorization": "Basic dXNlcjpwdw=="}, auth.WRONG_SCHEME),
    ({"authorization": "Bearer"}, auth.EMPTY),
    ({"authorization": "Bearer  rk_abc"}, auth.WHITESPACE),
    ({"authorization": "Bearer rk_abc\t"}, auth.WHITESPACE),
    ({"authorization": "Bearer rk_a bc"}, auth.WHITESPACE),
    ({"authorization": " Bearer rk_abc"}, auth.WHITESPACE),
])
def test_problems(headers, problem):
    assert auth.parse_authorization(headers) is problem


def test_valid_credentials():
    assert auth.parse_authorization({"authorization": "Bearer rk_abc_def"}) == "rk_abc_def"
    assert auth.parse_authorization({"authorization": "bearer tk_x"}) == "tk_x"  # scheme is case-insensitive


def test_messages_are_distinct_and_actionable():
    problems = [auth.MISSING, auth.MISSPELT, auth.NO_BEARER, auth.WHITESPACE, auth.DELETED, auth.UNKNOWN,
                auth.EXPIRED]
    assert len({p.message for p in problems}) == len(problems)
    assert "Authorisation" in auth.MISSPELT.message
    assert "Bearer" in auth.NO_BEARER.message
    assert "whitespace" in auth.WHITESPACE.message
    assert "deleted" in auth.DELETED.message
    assert "expired" in auth.EXPIRED.message


def test_unauthorized_is_401_with_challenge():
    err = auth.unauthorized(auth.DELETED)
    assert err.status == 401 and err.code == "unauthorized" and err.message == auth.DELETED.message
    assert err.headers["WWW-Authenticate"].startswith("Bearer")


def test_planted_generic_message(planted):
    planted("api_auth_generic_message")
    assert auth.unauthorized(auth.MISSPELT).message == "Invalid API key"
