"""The bugs of issue 10, each planted in refstack/broken.py: off, the stack is right; on, the bug shows.

Unit tests need no service. The integration tests run the stack's own API / worker code
in-process (``planted`` switches a variant on for one test) against the live stack's
Postgres, Redis and RabbitMQ, or, for the broker restart, a RabbitMQ of their own.
"""

from __future__ import annotations

import errno
import json
import uuid
from typing import Iterator

import pytest
from fastapi.testclient import TestClient

from refstack.api.admin import _int_field
from refstack.api.app import create_app
from refstack.api.errors import ApiError
from refstack.api.validation import check_relative, find_lone_surrogate, parse_json, resolve_asset
from refstack.db.schema import job_indexes
from refstack.settings import Settings
from refstack.worker.celery_app import make_celery

SURROGATE_BODY = b'{"model": "m", "prompt": "a\\ud800b"}'


def _field(fn, *args) -> str:
    with pytest.raises(ApiError) as err:
        fn(*args)
    assert err.value.status == 400 and err.value.code == "invalid_parameter", err.value.message
    return err.value.field


# ======================================================================= unit: no service


def test_lone_surrogate_is_a_400_naming_the_field(planted):
    assert _field(parse_json, SURROGATE_BODY, 1000) == "prompt"
    assert _field(parse_json, b'{"data": {"colours": ["red", "\\udfff"]}}', 1000) == "data.colours[1]"
    assert _field(parse_json, b'{"data": {"\\ud800": 1}}', 1000) == "data"  # a key: its object is named
    assert find_lone_surrogate({"a": ["ok", {"b": "fine \U0001F600"}]}) is None  # a real pair is fine
    planted("api_500_on_lone_surrogate")
    assert parse_json(SURROGATE_BODY, 1000)["prompt"] == "a\ud800b"  # passes on, to Postgres / the hash


def test_long_asset_component_is_a_400(planted, tmp_path):
    name = "a" * 256
    assert _field(check_relative, "input_asset", name) == "input_asset"
    assert _field(check_relative, "audio_asset", f"dir/{'é' * 128}") == "audio_asset"  # 256 bytes in UTF-8
    check_relative("input_asset", "dir/" + "a" * 255)  # NAME_MAX itself is fine
    planted("api_500_on_long_asset_name")
    check_relative("input_asset", name)  # no longer stopped ...
    with pytest.raises(OSError) as err:  # ... and the file system answers ENAMETOOLONG: the 500
        resolve_asset(str(tmp_path), "input_asset", name)
    assert err.value.errno == errno.ENAMETOOLONG


def test_explicit_null_integer_is_a_400(planted):
    assert _field(_int_field, {"ttl_seconds": None}, "ttl_seconds", 3600, 1) == "ttl_seconds"
    assert _int_field({}, "ttl_seconds", 3600, 1) == 3600  # absent: the default
    planted("api_500_on_null_ttl")
    assert _int_field({"ttl_seconds": None}, "ttl_seconds", 3600, 1) is None


def test_jobs_by_user_index_planted_away(planted):
    assert any("ix_jobs_user_created" in ddl for ddl in job_indexes())
    planted("db_no_jobs_by_user_index")
    left = job_indexes()
    assert left and not any("ix_jobs_user_created" in ddl for ddl in left)  # only that one is gone


def test_queue_durability_planted_away(planted):
    settings = Settings.from_env({})
    assert all(q.durable for q in make_celery(settings).conf.task_queues)
    planted("worker_queue_not_durable")
    assert not any(q.durable for q in make_celery(settings).conf.task_queues)


DEAD = {"DATABASE_URL": "postgresql://x@127.0.0.1:9/x", "REDIS_URL": "redis://127.0.0.1:9/0",
        "BROKER_URL": "amqp://guest:guest@127.0.0.1:9//", "ADMIN_TOKEN": "adm", "RATE_LIMIT_IP_RATE": "0"}


@pytest.fixture(scope="module")
def offline() -> Iterator[TestClient]:
    with TestClient(create_app(Settings.from_env(DEAD)), raise_server_exceptions=False) as client:
        yield client


def test_405_names_every_allowed_method(offline):
    r = offline.put("/v1/videos")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    assert {m.strip() for m in r.headers["allow"].split(",")} == {"GET", "POST"}  # two routes, one path
    r = offline.request("PATCH", "/api/v1/ai/jobs")
    assert r.status_code == 405 and r.headers["allow"] == "POST" and r.json()["error_code"] == "METHOD_NOT_ALLOWED"


def test_openapi_declares_bodies_parameters_security_and_every_status(offline):
    spec = offline.get("/openapi.json").json()
    paths = spec["paths"]
    schemes = spec["components"]["securitySchemes"]
    assert schemes["apiKey"] == {**schemes["apiKey"], "type": "http", "scheme": "bearer"}
    create = paths["/v1/videos"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/VideoRequest"}
    assert create["security"] == [{"apiKey": []}]
    assert {"202", "400", "401", "402", "409", "429", "503"} <= set(create["responses"])
    assert create["responses"]["202"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Video"}
    assert {p["name"] for p in paths["/v1/videos"]["get"]["parameters"]} == {"limit", "status", "cursor"}
    assert paths["/admin/users/{user_id}/tokens"]["post"]["security"] == [{"adminToken": []}]
    assert "security" not in paths["/health"]["get"] and paths["/api/v1/auth/login"]["post"]["security"] == []
    assert set(paths["/metrics"]["get"]["responses"]["200"]["content"]) == {"text/plain"}
    assert set(paths["/v1/videos/{job_id}/download"]["get"]["responses"]["200"]["content"]) == {"video/mp4"}
    ai_401 = paths["/api/v1/ai/jobs"]["post"]["responses"]["401"]["content"]["application/json"]["schema"]
    assert ai_401 == {"$ref": "#/components/schemas/AiError"}
    for path, item in paths.items():
        for method, op in item.items():
            assert "422" not in op["responses"], f"{method} {path} documents a 422 the API never answers"
            for code, resp in op["responses"].items():
                assert resp.get("content"), f"{method} {path} {code} has no response schema"
                for media in resp["content"].values():
                    assert media.get("schema") not in (None, {}), f"{method} {path} {code}: empty schema"


# ======================================================================= integration: in-process code, live services


@pytest.fixture(scope="module")
def services(live_stack, tmp_path_factory) -> Settings:
    tmp = tmp_path_factory.mktemp("inproc")
    (tmp / "assets").mkdir()
    (tmp / "storage").mkdir()
    return Settings.from_env({
        "DATABASE_URL": live_stack.database_url(), "REDIS_URL": live_stack.require("redis_url"),
        "BROKER_URL": live_stack.require("broker_url"), "ADMIN_TOKEN": "inproc-admin",
        "RATE_LIMIT_KEY_RATE": "0", "RATE_LIMIT_IP_RATE": "0",
        "ASSETS_DIR": str(tmp / "assets"), "STORAGE_DIR": str(tmp / "storage")})


@pytest.fixture(scope="module")
def api(services) -> Iterator[TestClient]:
    """The stack's API code in this process: planted variants switch per request."""
    app = create_app(services)
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = "Bearer inproc-admin"
        yield client
    app.state.svc.engine.dispose()
    app.state.svc.probe_engine.dispose()


@pytest.fixture
def user(api) -> dict:
    r = api.post("/admin/users", json={"credits": 100})
    assert r.status_code == 201, r.text
    return r.json()


def _post_json(api: TestClient, path: str, raw: bytes, token: str | None = None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return api.post(path, content=raw, headers=headers)



@pytest.mark.integration
def test_lone_surrogate_500s(api, user, planted):
    login = json.dumps({"phone": user["phone"], "password": "\ud800"}).encode()  # json escapes it: \ud800
    cases = [("/api/v1/ai/jobs", SURROGATE_BODY, user["api_key"], "prompt"),
             ("/admin/users", b'{"name": "x\\ud800"}', "inproc-admin", "name"),
             ("/api/v1/auth/login", login, None, "password")]
    for path, raw, token, field in cases:
        r = _post_json(api, path, raw, token)
        assert r.status_code == 400, (path, r.status_code, r.text)
        assert (r.json().get("field") or r.json()["error"]["field"]) == field
    planted("api_500_on_lone_surrogate")
    for path, raw, token, _ in cases:
        r = _post_json(api, path, raw, token)
        assert r.status_code == 500, (path, r.status_code, r.text)  # Postgres / the password hash refuse it


@pytest.mark.integration
@pytest.mark.parametrize("variant,body", [
    ("api_500_on_null_ttl", {"ttl_seconds": None}),
    ("api_500_on_huge_ttl", {"ttl_seconds": 10**12}),
])
def test_token_ttl_500s(api, user, planted, variant, body):
    path = f"/admin/users/{user['user_id']}/tokens"
    r = api.post(path, json=body)
    assert r.status_code == 400 and r.json()["error"]["field"] == "ttl_seconds", r.text
    assert api.post(path, json={"ttl_seconds": 10 * 365 * 86400}).status_code == 201  # the bound itself is fine
    planted(variant)
    r = api.post(path, json=body)
    assert r.status_code == 500, r.text


@pytest.mark.integration
def test_long_asset_name_500(api, user, planted):
    body = {"template_id": "t", "data": {"duration": 1}, "input_asset": "a" * 256}
    headers = {"Authorization": f"Bearer {user['api_key']}"}
    r = api.post("/v1/videos", json=body, headers=headers)
    assert r.status_code == 400 and r.json()["error"]["field"] == "input_asset", r.text
    planted("api_500_on_long_asset_name")
    r = api.post("/v1/videos", json=body, headers=headers)
    assert r.status_code == 500, r.text


@pytest.mark.integration
def test_malformed_json_500(api, user, planted):
    headers = {"Authorization": f"Bearer {user['api_key']}", "Content-Type": "application/json"}
    r = api.post("/v1/videos", content=b'{"template_id": ', headers=headers)
    assert r.status_code == 400 and r.json()["error"]["field"] == "body", r.text
    planted("api_500_on_malformed_json")
    assert api.post("/v1/videos", content=b'{"template_id": ', headers=headers).status_code == 500
    r = api.post("/v1/videos", content=b'{"template_id": 1, "data": {}}', headers=headers)
    assert r.status_code == 400 and r.json()["error"]["field"] == "template_id"  # well-formed: still validated


@pytest.mark.integration
def test_unknown_key_401_or_planted_403(api, user, planted):
    unknown = "rk_" + uuid.uuid4().hex[:8] + "_" + uuid.uuid4().hex  # well-formed, never issued
    for path in ("/v1/videos", "/api/v1/ai/models"):
        r = api.get(path, headers={"Authorization": f"Bearer {unknown}"})
        assert r.status_code == 401, r.text
        assert "no such key" in r.text and "WWW-Authenticate" in r.headers
    assert api.get("/v1/videos", headers={"Authorization": f"Bearer {user['api_key']}"}).status_code == 200
    planted("api_unknown_key_403")
    r = api.get("/v1/videos", headers={"Authorization": f"Bearer {unknown}"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert api.get("/v1/videos", headers={"Authorization": f"Bearer {user['api_key']}"}).status_code == 200


# ----------------------------------------------------------------------- worker code


@pytest.fixture
def runtime(services):
    from refstack.worker.tasks import Runtime

    rt = Runtime(services)
    yield rt
    if rt._engine is not None:
        rt._engine.dispose()


def _pending_job(rt, user_id: uuid.UUID, cost: int = 10) -> uuid.UUID:
    """A charged, pending render job, inserted as the API does but never published."""
    from sqlalchemy import insert

    from refstack.db import ops
    from refstack.db.schema import jobs

    job_id = uuid.uuid4()

    def tx(conn):
        assert ops.charge(conn, user_id, job_id, cost)
        conn.execute(insert(jobs).values(id=job_id, user_id=user_id, kind="render", status="pending", cost=cost,
                                         params={"template_id": "t"}))
    rt.tx(tx)
    return job_id


def _balance_and_ledger(rt, user_id: uuid.UUID) -> tuple[int, int]:
    from sqlalchemy import func, select

    from refstack.db.schema import credit_ledger, credits

    def tx(conn):
        balance = conn.execute(select(credits.c.balance).where(credits.c.user_id == user_id)).scalar()
        journal = conn.execute(select(func.coalesce(func.sum(credit_ledger.c.amount), 0))
                               .where(credit_ledger.c.user_id == user_id)).scalar()
        return balance, journal
    return rt.tx(tx)


@pytest.mark.integration
@pytest.mark.parametrize("variant", [None, "worker_redelivery_charge_no_ledger"])
def test_redelivery_charge_without_ledger(api, runtime, planted, variant):
    from refstack.worker.tasks import _claim

    if variant:
        planted(variant)
    user_id = uuid.UUID(api.post("/admin/users", json={"credits": 100}).json()["user_id"])
    job_id = _pending_job(runtime, user_id)
    first = _claim(runtime, job_id, "render")
    assert first.attempts == 1
    assert _balance_and_ledger(runtime, user_id) == (90, 90)  # one charge, journalled
    second = _claim(runtime, job_id, "render")  # a redelivery (the worker died mid-task)
    assert second.attempts == 2
    balance, journal = _balance_and_ledger(runtime, user_id)
    assert journal == 90
    assert balance == (80 if variant else 90)  # planted: money moved without a ledger row


@pytest.mark.integration
@pytest.mark.parametrize("variant", [None, "worker_heartbeat_no_ttl"])
def test_worker_heartbeat_has_a_ttl(api, runtime, planted, variant):
    from refstack.worker.tasks import HEARTBEAT_TTL, heartbeat, worker_name

    if variant:
        planted(variant)
    job_id = uuid.uuid4()
    assert heartbeat(runtime, job_id, "render", force=True)
    key = f"refstack:worker:{worker_name()}:{__import__('os').getpid()}"
    try:
        ttl = runtime.redis.ttl(key)
        if variant:
            assert ttl == -1  # no expiry: one key per worker process, forever
        else:
            assert 0 < ttl <= HEARTBEAT_TTL
        seen = api.get("/admin/workers").json()["workers"]
        assert any(w["job_id"] == str(job_id) for w in seen)
    finally:
        runtime.redis.delete(key)


@pytest.mark.integration
@pytest.mark.parametrize("variant", [None, "db_no_jobs_by_user_index"])
def test_jobs_of_one_user_read_few_rows_only_with_the_index(live_stack, planted, variant):
    """20 000 jobs of one busy user, 5 of a quiet one: the quiet user's page must not walk the table."""
    import psycopg
    from sqlalchemy import text

    from refstack.db.engine import make_engine
    from refstack.db.schema import migrate

    if variant:
        planted(variant)
    name = f"rc_idx_{uuid.uuid4().hex[:8]}"
    dsn = live_stack.require("database_dsn")
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = live_stack.database_url().rsplit("/", 1)[0]
    engine = make_engine(Settings.from_env({"DATABASE_URL": f"{base}/{name}"}), application_name="idx-test")
    try:
        migrate(engine)
        with engine.begin() as conn:
            busy, quiet = uuid.uuid4(), uuid.uuid4()
            for uid in (busy, quiet):
                conn.execute(text("INSERT INTO users (id) VALUES (:u)"), {"u": uid})
            conn.execute(text(
                "INSERT INTO jobs (id, user_id, kind, created_at) SELECT gen_random_uuid(), "
                "CASE WHEN g % 4000 = 0 THEN CAST(:q AS uuid) ELSE CAST(:b AS uuid) END, 'render', "
                "now() - g * interval '1 second' FROM generate_series(1, 20000) g"), {"q": quiet, "b": busy})
            conn.execute(text("ANALYZE jobs"))
            plan = conn.execute(text(
                "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT * FROM jobs WHERE user_id = :u AND kind = 'render' "
                "ORDER BY created_at DESC, id DESC LIMIT 21"), {"u": quiet}).scalar()
        indexes = {r for r in _index_names(engine)}
    finally:
        engine.dispose()
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    read = _rows_read(plan[0]["Plan"])
    if variant:
        assert "ix_jobs_user_created" not in indexes
        assert read > 5000, f"expected the planner to walk thousands of rows without the index, read {read}"
    else:
        assert "ix_jobs_user_created" in indexes
        assert read <= 50, f"expected an index lookup of the 5 jobs, read {read} rows"


def _index_names(engine) -> list[str]:
    from sqlalchemy import text

    with engine.connect() as conn:
        return [r[0] for r in conn.execute(text("SELECT indexname FROM pg_indexes WHERE tablename = 'jobs'"))]


def _rows_read(node: dict) -> int:
    """Rows a plan read from the table or index: returned plus removed by filter, over every node."""
    own = int(node.get("Actual Rows", 0)) + int(node.get("Rows Removed by Filter", 0)) \
        if "Scan" in node.get("Node Type", "") else 0
    return own + sum(_rows_read(child) for child in node.get("Plans", []))
