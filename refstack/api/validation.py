"""Request bodies: parsed and checked by hand so every 400 names its ``field`` (R §二.3, A §1.3).

Pure functions: bytes in, a plain dataclass out, or :class:`ApiError` 400
``invalid_parameter``. Nothing here touches the database or the disk except
:func:`resolve_asset`, which only resolves and checks a path.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refstack.api.errors import ApiError, invalid
from refstack.broken import is_broken

_TEMPLATE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_COLOUR = re.compile(r"^(?:[A-Za-z]{3,20}|#[0-9A-Fa-f]{6})$")
_MODEL = re.compile(r"^[A-Za-z0-9_.:/-]{1,128}$")
_PHONE = re.compile(r"^\+?[0-9]{5,20}$")

MAX_DURATION = 4 * 3600.0


def _type_name(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def parse_json(body: bytes, max_bytes: int) -> dict[str, Any]:
    """Decode a JSON object body; oversize, malformed or non-object bodies are 400 ``body``.

    A string (value or key) holding a lone UTF-16 surrogate (``"\\ud800"``) is valid JSON
    syntax but not Unicode: it cannot be stored in Postgres nor hashed, so it is a 400 naming
    where it was found, here, before any handler sees it.
    """
    if len(body) > max_bytes:
        raise invalid("body", f"request body is {len(body)} bytes; the limit is {max_bytes} bytes")
    if not body.strip():
        raise invalid("body", "request body is empty: send a JSON object")
    try:
        data = json.loads(body)
    except UnicodeDecodeError:
        raise invalid("body", "request body is not UTF-8 encoded JSON") from None
    except json.JSONDecodeError as exc:
        if is_broken("api_500_on_malformed_json"):
            raise  # planted bug: the decode error escapes as a 500
        raise invalid("body", f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise invalid("body", "JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise invalid("body", f"request body must be a JSON object, got {_type_name(data)}")
    if is_broken("api_500_on_bad_input") and "data" in data:
        data["template_id"]  # noqa: B018 - planted bug: a KeyError escapes as a 500
    where = None if is_broken("api_500_on_lone_surrogate") else find_lone_surrogate(data)
    if where is not None:
        raise invalid(where, f"{where} contains a lone UTF-16 surrogate (\\ud800-\\udfff): "
                             "not valid Unicode; send text as UTF-8")
    return data


def _has_surrogate(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def find_lone_surrogate(value: Any, path: str = "") -> str | None:
    """The field path (``data.title``, ``colours[1]``) of the first string holding a lone surrogate.

    A key with a surrogate is reported as its object's path (``body`` at the top): the key
    itself cannot be echoed in a UTF-8 answer.
    """
    if isinstance(value, str):
        return (path or "body") if _has_surrogate(value) else None
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = find_lone_surrogate(item, f"{path}[{i}]" if path else f"[{i}]")
            if found is not None:
                return found
    elif isinstance(value, dict):
        for key, item in value.items():
            if _has_surrogate(key):
                return path or "body"
            found = find_lone_surrogate(item, f"{path}.{key}" if path else key)
            if found is not None:
                return found
    return None


def _string(obj: dict, key: str, path: str, *, required: bool, max_len: int = 1000,
            pattern: re.Pattern | None = None) -> str | None:
    if key not in obj or obj[key] is None:
        if required:
            raise invalid(path, f"{path} is required")
        return None
    v = obj[key]
    if not isinstance(v, str):
        raise invalid(path, f"{path} must be a string, got {_type_name(v)}")
    if required and not v.strip():
        raise invalid(path, f"{path} must not be empty")
    if len(v) > max_len:
        raise invalid(path, f"{path} is {len(v)} characters; the limit is {max_len}")
    if "\x00" in v:
        raise invalid(path, f"{path} contains a NUL character")
    if pattern is not None and not pattern.match(v):
        raise invalid(path, f"{path} has an invalid format")
    return v


def _number(obj: dict, key: str, path: str, *, lo: float, hi: float, integer: bool = False,
            even: bool = False) -> float | int | None:
    if key not in obj or obj[key] is None:
        return None
    v = obj[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise invalid(path, f"{path} must be a {'integer' if integer else 'number'}, got {_type_name(v)}")
    if integer and not (isinstance(v, int) or (isinstance(v, float) and v.is_integer())):
        raise invalid(path, f"{path} must be an integer, got {v}")
    if isinstance(v, float) and not math.isfinite(v):
        raise invalid(path, f"{path} must be finite")
    if not (lo <= v <= hi):
        raise invalid(path, f"{path} must be between {lo:g} and {hi:g}, got {v}")
    if integer:
        v = int(v)
        if even and v % 2:
            raise invalid(path, f"{path} must be even, got {v}")
    return v


@dataclass(frozen=True)
class VideoRequest:
    template_id: str
    title: str
    width: int
    height: int
    duration: float
    fps: int
    colours: tuple[str, ...]
    price: float | None
    input_asset: str | None
    audio_asset: str | None
    data: dict[str, Any] = field(default_factory=dict)

    def params(self) -> dict[str, Any]:
        """What is stored in jobs.params and given to the worker."""
        return {
            "template_id": self.template_id, "title": self.title, "width": self.width, "height": self.height,
            "duration": self.duration, "fps": self.fps, "colours": list(self.colours), "price": self.price,
            "input_asset": self.input_asset, "audio_asset": self.audio_asset, "data": self.data,
        }


def parse_video_request(data: dict[str, Any]) -> VideoRequest:
    """Check a ``POST /v1/videos`` body (R §二.3: template_id string, data object, price number)."""
    template_id = _string(data, "template_id", "template_id", required=True, max_len=128, pattern=_TEMPLATE_ID)
    if "data" not in data or data["data"] is None:
        raise invalid("data", "data is required (an object with the template's fields)")
    d = data["data"]
    if not isinstance(d, dict):
        raise invalid("data", f"data must be an object, got {_type_name(d)}")
    title = _string(d, "title", "data.title", required=False, max_len=200) or ""
    width = _number(d, "width", "data.width", lo=16, hi=3840, integer=True, even=True) or 640
    height = _number(d, "height", "data.height", lo=16, hi=2160, integer=True, even=True) or 360
    duration = _number(d, "duration", "data.duration", lo=0.1, hi=MAX_DURATION)
    fps = _number(d, "fps", "data.fps", lo=1, hi=60, integer=True) or 25
    price = _number(d, "price", "data.price", lo=0, hi=1e12)
    colours_raw = d.get("colours", d.get("colors"))
    colours: tuple[str, ...] = ()
    if colours_raw is not None:
        key = "data.colours" if "colours" in d else "data.colors"
        if isinstance(colours_raw, str):
            colours_raw = [colours_raw]
        if not isinstance(colours_raw, list) or len(colours_raw) > 8:
            raise invalid(key, f"{key} must be an array of up to 8 colours")
        for i, c in enumerate(colours_raw):
            if not isinstance(c, str) or not _COLOUR.match(c):
                raise invalid(f"{key}[{i}]", f"{key}[{i}] must be a colour name or #RRGGBB")
        colours = tuple(colours_raw)
    input_asset = _string(data, "input_asset", "input_asset", required=False, max_len=1024)
    audio_asset = _string(data, "audio_asset", "audio_asset", required=False, max_len=1024)
    for name, val in (("input_asset", input_asset), ("audio_asset", audio_asset)):
        if val is not None:
            check_relative(name, val)
    if duration is None:
        duration = 5.0
    extra = {k: v for k, v in d.items() if k not in ("title", "width", "height", "duration", "fps", "price",
                                                       "colours", "colors")}
    return VideoRequest(template_id, title, int(width), int(height), float(duration), int(fps), colours,
                        price, input_asset, audio_asset, extra)


#: longest file name component (NAME_MAX on Linux), in bytes
NAME_MAX = 255


def check_relative(field_name: str, value: str) -> None:
    p = Path(value)
    if not value.strip() or p.is_absolute() or ".." in p.parts:
        raise invalid(field_name, f"{field_name} must be a path relative to the assets directory, "
                                  f"without '..', got {value!r}")
    longest = max((len(part.encode("utf-8", "surrogatepass")) for part in p.parts), default=0)
    if longest > NAME_MAX and not is_broken("api_500_on_long_asset_name"):
        raise invalid(field_name, f"{field_name} has a path component of {longest} bytes; a file name "
                                  f"is at most {NAME_MAX} bytes")


def resolve_asset(assets_dir: str, field_name: str, value: str) -> Path:
    """The absolute path of an asset; 400 ``input_not_found`` / ``input_permission_denied`` (R §一.1 错误1)."""
    check_relative(field_name, value)
    base = Path(assets_dir).resolve()
    path = (base / value).resolve()
    if base not in path.parents:
        raise invalid(field_name, f"{field_name} escapes the assets directory: {value!r}")
    if not path.exists():
        raise ApiError(400, "input_not_found", f"{field_name} {value!r}: No such file or directory", field=field_name)
    if not path.is_file():
        raise ApiError(400, "invalid_parameter", f"{field_name} {value!r} is not a regular file", field=field_name)
    try:
        fd = os.open(path, os.O_RDONLY)
        os.close(fd)
    except PermissionError:
        raise ApiError(400, "input_permission_denied", f"{field_name} {value!r}: Permission denied",
                       field=field_name) from None
    except OSError as exc:
        raise ApiError(400, "input_not_found", f"{field_name} {value!r}: {exc.strerror}", field=field_name) from None
    return path


@dataclass(frozen=True)
class AiJobRequest:
    model: str
    prompt: str
    conversation_id: str | None


def parse_ai_job(data: dict[str, Any]) -> AiJobRequest:
    model = _string(data, "model", "model", required=True, max_len=128, pattern=_MODEL)
    prompt = _string(data, "prompt", "prompt", required=True, max_len=20000)
    conv = _string(data, "conversation_id", "conversation_id", required=False, max_len=64)
    return AiJobRequest(model, prompt, conv)


def parse_login(data: dict[str, Any]) -> tuple[str, str]:
    phone = _string(data, "phone", "phone", required=True, max_len=32, pattern=_PHONE)
    password = _string(data, "password", "password", required=True, max_len=200)
    return phone, password


def parse_limit(raw: str | None, default: int = 20, maximum: int = 100) -> int:
    if raw is None:
        return default
    try:
        v = int(raw)
    except ValueError:
        raise invalid("limit", f"limit must be an integer, got {raw[:40]!r}") from None
    if not 1 <= v <= maximum:
        raise invalid("limit", f"limit must be between 1 and {maximum}, got {v}")
    return v
