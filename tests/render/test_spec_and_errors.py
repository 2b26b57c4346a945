"""TemplateSpec validation and the error tree (codes, messages, pickling)."""

from __future__ import annotations

import pickle

import pytest

from refstack.render import (
    Busy,
    InputNotFound,
    InputPermissionDenied,
    InvalidMedia,
    InvalidSpec,
    RenderError,
    RenderFailed,
    RenderTimeout,
    ResourceExhausted,
    StorageFull,
    TemplateSpec,
)


@pytest.mark.parametrize("preset", ["slow", "slower", "veryslow", "placebo"])
def test_presets_slower_than_medium_are_rejected(preset):
    # R §三: preset no slower than medium
    with pytest.raises(InvalidSpec, match="slower than 'medium'") as exc:
        TemplateSpec(title="t", preset=preset)
    assert exc.value.code == "invalid_spec"


@pytest.mark.parametrize("preset", ["ultrafast", "veryfast", "medium"])
def test_medium_and_faster_presets_are_accepted(preset):
    assert TemplateSpec(title="t", preset=preset).preset == preset


@pytest.mark.parametrize("kwargs", [
    {"background_color": "red:x=1"}, {"text_color": "white,drawbox"}, {"width": 0}, {"height": 721},
    {"duration": 0}, {"fps": 0}, {"encoder": "libx264 -f"}, {"preset": "turbo"},
])
def test_unsafe_or_impossible_specs_are_rejected(kwargs):
    with pytest.raises(InvalidSpec):
        TemplateSpec(title="t", **kwargs)


@pytest.mark.parametrize("err", [
    RenderError("render_failed", "m", "d", path="/x"),
    InputNotFound("missing /a", path="/a"),
    InputPermissionDenied("denied /a", path="/a", mode=0),
    InvalidMedia("bad /a", "ffmpeg text", path="/a"),
    RenderTimeout("slow", reason="stall", limit=1.0),
    StorageFull("full", path="/o"),
    ResourceExhausted("oom", returncode=-9),
    RenderFailed("failed", "stderr tail"),
    Busy("busy", retry_after=5.0, limit=2, active=2),
    InvalidSpec("bad spec", problems=["x"]),
])
def test_errors_survive_pickling_with_code_and_fields(err):
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err)
    assert (back.code, back.message, back.detail, back.fields) == (err.code, err.message, err.detail, err.fields)
    assert str(back) == str(err)
    assert isinstance(back, RenderError)


def test_codes_match_the_scenarios():
    assert [c.code for c in (InputNotFound, InputPermissionDenied, InvalidMedia, RenderTimeout, StorageFull,
                             ResourceExhausted, RenderFailed)] == [
        "input_not_found", "input_permission_denied", "invalid_media", "timeout", "storage_full",
        "resource_exhausted", "render_failed"]
