"""The app with every dependency unreachable: envelopes, 401s and /health need no service."""

import time

import pytest
from fastapi.testclient import TestClient

from refstack.api.app import create_app
from refstack.settings import Settings

DEAD = {  # closed loopback ports: connection refused at once
    "DATABASE_URL": "postgresql://x@127.0.0.1:9/x", "REDIS_URL": "redis://127.0.0.1:9/0",
    "BROKER_URL": "amqp://guest:guest@127.0.0.1:9//", "ADMIN_TOKEN": "adm",
    "RATE_LIMIT_IP_RATE": "0",
}


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(Settings.from_env(DEAD)), raise_server_exceptions=False) as c:
        yield c


def test_health_names_every_failing_dependency_quickly(client):
    t0 = time.monotonic()
    r = client.get("/health")
    assert time.monotonic() - t0 < 3.0
    assert r.status_code == 503
    assert set(r.json()["failing"]) == {"database", "redis", "broker"}


def test_auth_problems_before_any_lookup(client):
    r = client.get("/v1/videos", headers={"Authorisation": "Bearer rk_x"})
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized" and "Authorisation" in r.json()["error"]["message"]
    r = client.get("/api/v1/ai/jobs/1")
    assert r.status_code == 401 and r.json()["error_code"] == "UNAUTHORIZED" and r.json()["success"] is False


def test_database_down_is_a_clean_503(client):
    r = client.get("/v1/videos", headers={"Authorization": "Bearer rk_abc_def"})
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "database_unavailable"
    assert "Traceback" not in r.text and "psycopg" not in r.text


def test_unknown_route_and_method_use_the_envelope(client):
    r = client.get("/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = client.put("/v1/videos")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_admin_requires_token(client):
    assert client.post("/admin/users").status_code == 401
    assert client.post("/admin/users", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_metrics_render_without_dependencies(client):
    client.get("/v1/nothing")
    r = client.get("/metrics")
    assert r.status_code == 200
    assert 'http_requests_total{method="GET",path="<unmatched>",status="404"}' in r.text
    assert 'refstack_dependency_up{dependency="database"} 0.0' in r.text
