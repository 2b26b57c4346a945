"""R §二.3 / A §1.3: every bad body is a 400 naming its field, never a 500."""

import json
import os

import pytest

from refstack.api.errors import ApiError
from refstack.api.validation import (
    parse_ai_job, parse_json, parse_limit, parse_login, parse_video_request, resolve_asset,
)

GOOD = {"template_id": "template_abc123", "data": {"title": "Test", "price": 99, "width": 320, "height": 240,
                                                   "duration": 2, "colours": ["navy", "#ffcc00"]}}


def field_of(fn, *args):
    with pytest.raises(ApiError) as err:
        fn(*args)
    assert err.value.status == 400
    return err.value.field, err.value.message


def test_good_request():
    req = parse_video_request(GOOD)
    assert (req.template_id, req.width, req.height, req.duration, req.price) == ("template_abc123", 320, 240, 2.0, 99)
    assert req.colours == ("navy", "#ffcc00")
    assert json.dumps(req.params())  # storable as JSONB


@pytest.mark.parametrize("body,field", [
    ({"data": {"title": "Test"}}, "template_id"),                      # 错误1: 缺少必需参数
    ({"template_id": 123, "data": {}}, "template_id"),                 # 错误2: 类型错误
    ({"template_id": "t", "data": {"price": "99"}}, "data.price"),     # 错误2: price 应该是数字
    ({"template_id": "t", "data": {"price": True}}, "data.price"),
    ({"template_id": "t"}, "data"),
    ({"template_id": "t", "data": []}, "data"),
    ({"template_id": "t", "data": {"width": 17}}, "data.width"),
    ({"template_id": "t", "data": {"width": 1e9}}, "data.width"),
    ({"template_id": "t", "data": {"duration": -1}}, "data.duration"),
    ({"template_id": "t", "data": {"colours": ["not a colour!"]}}, "data.colours[0]"),
    ({"template_id": "t' OR 1=1 --", "data": {}}, "template_id"),
    ({"template_id": "t", "data": {}, "input_asset": "../etc/passwd"}, "input_asset"),
    ({"template_id": "t", "data": {}, "input_asset": "/etc/passwd"}, "input_asset"),
    ({"template_id": "t", "data": {}, "audio_asset": 5}, "audio_asset"),
])
def test_bad_fields(body, field):
    assert field_of(parse_video_request, body)[0] == field


@pytest.mark.parametrize("raw,needle", [
    (b'{"template_id": "t",', "malformed JSON"),                       # 错误3: JSON格式错误
    (b"", "empty"),
    (b"[1, 2]", "JSON object"),
    (b"\xc3\x28", "UTF-8"),
    (b"[" * 100000 + b"]" * 100000, ""),
])
def test_bad_json(raw, needle):
    field, message = field_of(parse_json, raw, 10**7)
    assert field == "body" and needle in message


def test_oversize_body():
    field, message = field_of(parse_json, b"{" + b" " * 100 + b"}", 50)
    assert field == "body" and "limit" in message


def test_planted_500_on_bad_input(planted):
    body = b'{"data": {"title": "t"}}'
    assert parse_json(body, 100) == {"data": {"title": "t"}}  # healthy: parse_video_request names the field
    planted("api_500_on_bad_input")
    with pytest.raises(KeyError):
        parse_json(body, 100)
    assert field_of(parse_json, b"{", 100)[0] == "body"  # malformed JSON is its own variant


def test_planted_500_on_malformed_json(planted):
    assert field_of(parse_json, b'{"template_id": ', 100)[0] == "body"
    planted("api_500_on_malformed_json")
    with pytest.raises(json.JSONDecodeError):
        parse_json(b'{"template_id": ', 100)
    assert parse_json(b'{"a": 1}', 100) == {"a": 1}


def test_ai_and_login_and_limit():
    assert parse_ai_job({"model": "refstack-echo", "prompt": "hi"}).model == "refstack-echo"
    assert field_of(parse_ai_job, {"prompt": "hi"})[0] == "model"
    assert field_of(parse_ai_job, {"model": "m", "prompt": 1})[0] == "prompt"
    assert parse_login({"phone": "13800138000", "password": "x"}) == ("13800138000", "x")
    assert field_of(parse_login, {"phone": "abc", "password": "x"})[0] == "phone"
    assert parse_limit(None) == 20 and parse_limit("5") == 5
    assert field_of(parse_limit, "0")[0] == "limit"
    assert field_of(parse_limit, "1; DROP TABLE jobs")[0] == "limit"


def test_assets(tmp_path):
    (tmp_path / "in.mp4").write_bytes(b"x")
    assert resolve_asset(str(tmp_path), "input_asset", "in.mp4") == (tmp_path / "in.mp4").resolve()
    with pytest.raises(ApiError) as err:
        resolve_asset(str(tmp_path), "input_asset", "missing.mp4")
    assert err.value.code == "input_not_found" and "missing.mp4" in err.value.message


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads mode-000 files")
def test_unreadable_asset(tmp_path):
    p = tmp_path / "locked.mp4"
    p.write_bytes(b"x")
    p.chmod(0)
    with pytest.raises(ApiError) as err:
        resolve_asset(str(tmp_path), "input_asset", "locked.mp4")
    assert err.value.code == "input_permission_denied"
