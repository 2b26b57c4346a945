import pytest

from refstack.settings import Settings, SettingsError


def test_defaults_are_valid_and_documented():
    s = Settings.from_env({})
    assert s.api_host == "127.0.0.1" and s.rate_limit_fail_mode == "open"
    assert s.rate_limit_ip_rate == 10 and s.rate_limit_ip_burst == 20  # R §六.3 limit_req
    names = [row[0] for row in Settings.describe()]
    for var in ("DATABASE_URL", "REDIS_URL", "BROKER_URL", "ADMIN_TOKEN", "STORAGE_DIR", "ASSETS_DIR",
                "API_HOST", "API_PORT", "WEB_CONCURRENCY", "PROVIDER_URL", "PROVIDER_KEYS", "AI_TASK_TIMEOUT",
                "RENDER_ENCODER", "RENDER_TIME_LIMIT", "RENDER_STALL_TIMEOUT", "RENDER_SEGMENT_SECONDS",
                "DB_POOL_SIZE", "DB_MAX_OVERFLOW", "DB_POOL_TIMEOUT", "DB_STATEMENT_TIMEOUT_MS",
                "RATE_LIMIT_FAIL_MODE", "WORKER_CONCURRENCY", "WORKER_MAX_TASKS_PER_CHILD", "REFSTACK_BROKEN"):
        assert var in names


def test_values_are_parsed():
    s = Settings.from_env({"API_PORT": "9001", "PROVIDER_KEYS": "a, b,,c", "AI_TASK_TIMEOUT": "2.5",
                           "RATE_LIMIT_FAIL_MODE": "CLOSED", "DATABASE_URL": "postgresql://u@h:1/d"})
    assert s.api_port == 9001
    assert s.provider_keys == ("a", "b", "c")
    assert s.ai_task_timeout == 2.5
    assert s.rate_limit_fail_mode == "closed"
    assert s.sqlalchemy_url == "postgresql+psycopg://u@h:1/d"


@pytest.mark.parametrize("var,value,expect", [
    ("API_PORT", "eighty", "an integer"),
    ("API_PORT", "70000", "[1, 65535]"),
    ("DB_POOL_TIMEOUT", "-1", "a number in"),
    ("AI_TASK_TIMEOUT", "nan", "a number in"),
    ("RATE_LIMIT_FAIL_MODE", "maybe", "one of open, closed"),
    ("DATABASE_URL", "mysql://x/y", "postgresql://"),
    ("BROKER_URL", "localhost:5672", "amqp://"),
    ("WORKER_QUEUES", "render,video", "subset of"),
    ("REFSTACK_BROKEN", "api_no_such_bug", "unknown variant"),
])
def test_bad_values_name_the_variable(var, value, expect):
    with pytest.raises(SettingsError) as err:
        Settings.from_env({var: value})
    assert var in str(err.value) and expect in str(err.value)
    assert err.value.variable == var


def test_error_pickles():
    import pickle

    e = SettingsError("x", "API_PORT", "1")
    assert pickle.loads(pickle.dumps(e)).variable == "API_PORT"
