"""The corrupt corpus is only useful if the probe gate classifies each entry as declared."""

from __future__ import annotations

import hashlib

import pytest

from media_fixtures import ensure_corpus, valid_clip
from media_fixtures.generate import RECIPES
from refstack.render import InputError, RenderLimits, TemplateSpec, probe_input, render


@pytest.mark.parametrize("name", [r[0] for r in RECIPES])
def test_gate_classifies_each_fixture_as_declared(corpus, name):
    f = corpus.by_name(name)
    try:
        got = probe_input(f.path, f.role, timeout=20).verdict
    except InputError as exc:
        got = exc.code
        assert str(f.path) in exc.message, "errors must name the path"
    assert got == f.expected, f"{name} ({f.kind}): gate said {got!r}, corpus declares {f.expected!r}"


@pytest.mark.parametrize("name", [r[0] for r in RECIPES if r[3] == "partly_damaged"])
def test_partly_damaged_fixtures_complete_after_the_tolerant_retry(corpus, name, tmp_path):
    f = corpus.by_name(name)
    kw = {"background_video": f.path} if f.role == "video" else {"audio": f.path}
    # 5 s > the 4 s source, so the damaged part is always reached
    res = render(TemplateSpec(title=name, duration=5.0, width=160, height=120, fps=10, preset="ultrafast", **kw),
                 tmp_path / "o.mp4", limits=RenderLimits(total_timeout=60, stall_timeout=10))
    assert res.tolerant_retry and abs(res.duration - 5.0) <= 0.5


def test_corpus_is_big_and_varied_enough(corpus):
    assert len(corpus) >= 25
    kinds = {f.kind for f in corpus}
    assert {"truncated", "bitflip_header", "bitflip_index", "bitflip_payload", "empty", "wrong_extension",
            "garbage", "garbage_header", "unsupported_codec", "absurd_dimensions", "damaged_audio",
            "box_missing", "wrong_content"} <= kinds
    assert {f.expected for f in corpus} == {"invalid_media", "partly_damaged"}


def _digest(corpus) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.path.read_bytes()).hexdigest() for f in corpus}


def test_same_seed_same_bytes_and_cache_is_reused(tmp_path, corpus):
    again = ensure_corpus(corpus.root.parent, seed=0)
    assert again.root == corpus.root  # cached: not rebuilt
    fresh = ensure_corpus(tmp_path, seed=0)
    assert _digest(fresh) == _digest(corpus)  # deterministic from the seed


def test_other_seed_other_corpus(tmp_path, corpus):
    other = ensure_corpus(tmp_path, seed=1)
    assert other.key != corpus.key
    assert _digest(other)["payload_bitflip_light"] != _digest(corpus)["payload_bitflip_light"]


def test_recipe_change_changes_the_key(monkeypatch, corpus):
    import media_fixtures.generate as gen

    monkeypatch.setattr(gen, "RECIPE_VERSION", gen.RECIPE_VERSION + 1)
    assert gen.corpus_key(0) != corpus.key


def test_valid_clip_is_cached_and_has_the_requested_shape(tmp_path):
    a = valid_clip(tmp_path, 1, 176, 144, with_audio=False)
    mtime = a.stat().st_mtime_ns
    assert valid_clip(tmp_path, 1, 176, 144, with_audio=False).stat().st_mtime_ns == mtime
    p = probe_input(a, "video")
    assert (p.width, p.height) == (176, 144) and not p.damaged


def test_module_is_runnable(tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "media_fixtures.generate", str(tmp_path), "--seed", "3"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "fixtures" in out.stdout and "RuntimeWarning" not in out.stderr
