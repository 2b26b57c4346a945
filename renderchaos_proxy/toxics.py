"""Toxic definitions: types, attribute defaults and validation.

A :class:`Toxic` is the API object (name, type, stream, toxicity, attributes).
What a toxic *does* to bytes lives in :mod:`renderchaos_proxy.link`; this
module only knows shapes, so the API layer can validate a request completely
before anything changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from renderchaos_proxy.errors import ApiError, BAD_REQUEST_BODY, INVALID_STREAM, INVALID_TOXIC_TYPE

#: type -> attribute defaults (Go zero values of the toxic structs; all int64).
TOXIC_TYPES: dict[str, dict[str, int]] = {
    "noop": {},
    "latency": {"latency": 0, "jitter": 0},
    "bandwidth": {"rate": 0},
    "slow_close": {"delay": 0},
    "timeout": {"timeout": 0},
    "reset_peer": {"timeout": 0},
    "slicer": {"average_size": 0, "size_variation": 0, "delay": 0},
    "limit_data": {"bytes": 0},
}

STREAMS = ("upstream", "downstream")


@dataclass
class Toxic:
    """One toxic as the API shows it. ``attributes`` is replaced, never mutated, on update."""

    name: str
    type: str
    stream: str
    toxicity: float = 1.0
    attributes: dict[str, int] = field(default_factory=dict)

    @property
    def direction(self) -> str:
        return self.stream.lower()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": self.toxicity,
            "attributes": dict(self.attributes),
        }


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ApiError(f"{BAD_REQUEST_BODY}: json: cannot unmarshal {type(value).__name__} into {what}", 400)
    return float(value)


def merge_attributes(toxic_type: str, current: dict[str, int], given: Any) -> dict[str, int]:
    """Decode ``given`` over ``current`` like Go's json.Decode into the toxic struct."""
    attributes = dict(current)
    if given is None:
        return attributes
    if not isinstance(given, dict):
        raise ApiError(f"{BAD_REQUEST_BODY}: json: cannot unmarshal attributes of type {type(given).__name__}", 400)
    known = TOXIC_TYPES[toxic_type]
    for key, value in given.items():
        if key not in known:
            continue  # Go ignores unknown fields
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            isinstance(value, float) and not value.is_integer()
        ):
            raise ApiError(
                f"{BAD_REQUEST_BODY}: json: cannot unmarshal {value!r} into Go struct field "
                f".attributes.{key} of type int64",
                400,
            )
        attributes[key] = int(value)
    return attributes


def toxic_from_json(body: Any) -> Toxic:
    """Validate a POST /proxies/{p}/toxics body (same order of checks as Toxiproxy)."""
    if not isinstance(body, dict):
        raise ApiError(f"{BAD_REQUEST_BODY}: json: cannot unmarshal into toxic", 400)
    stream = body.get("stream") or "downstream"
    toxicity = body.get("toxicity", 1.0)
    toxicity = 1.0 if toxicity is None else _number(toxicity, "toxicity of type float32")
    toxic_type = body.get("type") or ""
    name = body.get("name") or ""
    for key, value in (("stream", stream), ("type", toxic_type), ("name", name)):
        if not isinstance(value, str):
            raise ApiError(f"{BAD_REQUEST_BODY}: json: cannot unmarshal into field {key} of type string", 400)
    if stream.lower() not in STREAMS:
        raise ApiError(INVALID_STREAM, 400)
    if not name:
        name = f"{toxic_type}_{stream}"
    if toxic_type not in TOXIC_TYPES:
        raise ApiError(INVALID_TOXIC_TYPE, 400)
    attributes = merge_attributes(toxic_type, TOXIC_TYPES[toxic_type], body.get("attributes"))
    return Toxic(name=name, type=toxic_type, stream=stream, toxicity=toxicity, attributes=attributes)
