"""Fixtures for the render-pipeline tests: real ffmpeg on the host, small clips."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

import refstack.broken
from media_fixtures import Corpus, ensure_corpus, valid_audio, valid_clip

#: How long a killed ffmpeg may take to disappear (scenario stream.client_disconnect: 1 s for one stream).
GONE_WITHIN = 1.0


def child_ffmpeg(include_zombies: bool = False) -> list[int]:
    """Pids of ffmpeg processes whose parent is this test process (read from /proc)."""
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        close = stat.rindex(")")
        comm = stat[stat.index("(") + 1:close]
        state, ppid = stat[close + 2:].split()[:2]
        if comm == "ffmpeg" and int(ppid) == me and (include_zombies or state != "Z"):
            found.append(int(entry))
    return found


def kill_leftovers() -> list[int]:
    """Kill and reap any ffmpeg this process left behind (after a broken variant)."""
    pids = child_ffmpeg(include_zombies=True)
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    return pids


@pytest.fixture
def no_orphans():
    """Fails the test if an ffmpeg child of this process survives it."""
    before = set(child_ffmpeg(include_zombies=True))
    yield
    left = set(child_ffmpeg()) - before
    kill_leftovers()
    assert not left, f"ffmpeg processes left running after the test: {sorted(left)}"


@pytest.fixture
def broken(monkeypatch):
    """``broken("name")`` switches on a planted bug for this test only."""

    def switch(*names: str) -> None:
        monkeypatch.setenv("REFSTACK_BROKEN", ",".join(names))
        refstack.broken.active.cache_clear()

    yield switch
    monkeypatch.delenv("REFSTACK_BROKEN", raising=False)
    refstack.broken.active.cache_clear()


@pytest.fixture(autouse=True)
def _healthy_by_default(monkeypatch):
    monkeypatch.delenv("REFSTACK_BROKEN", raising=False)
    refstack.broken.active.cache_clear()
    yield
    refstack.broken.active.cache_clear()


@pytest.fixture(scope="session")
def media_cache(request) -> Path:
    return Path(request.config.cache.mkdir("renderchaos-media"))


@pytest.fixture(scope="session")
def corpus(media_cache) -> Corpus:
    return ensure_corpus(media_cache, seed=0)


@pytest.fixture(scope="session")
def clip(media_cache) -> Path:
    """A clean 2 s 320x240 H.264/AAC faststart MP4."""
    return valid_clip(media_cache, 2, 320, 240, with_audio=True)


@pytest.fixture(scope="session")
def audio(media_cache) -> Path:
    return valid_audio(media_cache, 2)


@pytest.fixture
def tiny_volume(tmp_path):
    """A 256 KiB tmpfs (the output volume that fills up); skipped if mounting is not permitted."""
    mnt = tmp_path / "vol"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root / CAP_SYS_ADMIN): {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def ffprobe_json(path: Path) -> dict:
    import json

    out = subprocess.run(["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
                         capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr.decode()
    return json.loads(out.stdout)


@pytest.fixture
def ffmpeg_children():
    """``ffmpeg_children()`` -> pids of running ffmpeg children of this process."""
    return child_ffmpeg


@pytest.fixture
def leftovers():
    """``leftovers()`` kills and reaps ffmpeg children a broken variant left behind; returns their pids."""
    return kill_leftovers


@pytest.fixture
def probe_out():
    return ffprobe_json
