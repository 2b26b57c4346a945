"""Build and cache the media corpus: ``python -m media_fixtures.generate DEST [--seed N]``.

Every fixture is made from ffmpeg's own test sources (testsrc2, sine) and then
damaged in a deterministic, seeded way. The cache key is a hash of this file's
source (the recipes), the seed and the ffmpeg version: change a recipe and the
corpus is rebuilt; otherwise it is reused.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator, Literal

Expected = Literal["invalid_media", "partly_damaged"]

#: Bump to force a rebuild even if the source text did not change.
RECIPE_VERSION = 1
BASE_SECONDS = 4
BASE_SIZE = (320, 240)


@dataclass(frozen=True)
class MediaFixture:
    """One corpus entry: ``expected`` is what the ffprobe gate must say about it."""

    name: str
    path: Path
    kind: str
    expected: str
    #: What the render would use it as: a background ``video`` or an ``audio`` track.
    role: str = "video"
    note: str = ""


@dataclass(frozen=True)
class Corpus:
    root: Path
    key: str
    seed: int
    fixtures: tuple[MediaFixture, ...]
    #: Clean material the corrupt variants were made from.
    valid_video: Path = field(default=Path())
    valid_audio: Path = field(default=Path())

    def __iter__(self):
        return iter(self.fixtures)

    def __len__(self) -> int:
        return len(self.fixtures)

    def by_name(self, name: str) -> MediaFixture:
        for f in self.fixtures:
            if f.name == name:
                return f
        raise KeyError(f"no fixture {name!r}; known: {[f.name for f in self.fixtures]}")

    def expecting(self, expected: str) -> list[MediaFixture]:
        return [f for f in self.fixtures if f.expected == expected]


# --------------------------------------------------------------------------- ffmpeg helpers


def _ffmpeg(*args: str, timeout: float = 120.0) -> None:
    argv = ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y", *args]
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _, err = p.communicate(timeout=timeout)
    except BaseException:
        os.killpg(p.pid, 9)
        p.wait()
        raise
    if p.returncode != 0:
        raise RuntimeError(f"fixture build failed: {' '.join(argv)}\n{err.decode(errors='replace')}")


@lru_cache(maxsize=1)
def ffmpeg_version() -> str:
    out = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True, timeout=30).stdout
    return out.splitlines()[0] if out else "unknown"


@contextmanager
def _private_part(dest: Path) -> Iterator[Path]:
    """A temp path next to ``dest`` that no other writer shares.

    Two xdist workers asking for the same cached clip used to write one ``.part`` file: ffmpeg -y
    in the second truncated it while the first renamed it into place, and a clip with no streams
    stayed in the cache. Each writer now renders into its own file; the atomic rename makes the
    last complete one win. The temp file never outlives an error.
    """
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def _make_clip(dest: Path, seconds: float, width: int, height: int, with_audio: bool,
               faststart: bool = True, fps: int = 25) -> Path:
    args = ["-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}:duration={seconds}"]
    if with_audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"]
    args += ["-c:v", "libx264", "-preset", "veryfast", "-g", str(fps), "-pix_fmt", "yuv420p"]
    if with_audio:
        args += ["-c:a", "aac", "-b:a", "96k"]
    if faststart:
        args += ["-movflags", "+faststart"]
    with _private_part(dest) as tmp:
        _ffmpeg(*args, "-f", "mp4", str(tmp))
        os.replace(tmp, dest)
    return dest


def _make_audio(dest: Path, seconds: float, codec: str = "aac") -> Path:
    fmt = {"aac": ("ipod", ["-c:a", "aac", "-b:a", "96k"]), "pcm": ("wav", ["-c:a", "pcm_s16le"])}[codec]
    with _private_part(dest) as tmp:
        _ffmpeg("-f", "lavfi", "-i", f"sine=frequency=330:sample_rate=48000:duration={seconds}",
                *fmt[1], "-f", fmt[0], str(tmp))
        os.replace(tmp, dest)
    return dest


def valid_clip(cache_dir: Path, seconds: float = 2, width: int = 320, height: int = 240,
               with_audio: bool = True, fps: int = 25) -> Path:
    """A clean H.264(/AAC) MP4 with moov first (faststart), cached by its parameters."""
    d = Path(cache_dir) / "valid"
    d.mkdir(parents=True, exist_ok=True)
    dest = d / f"clip_{seconds:g}s_{width}x{height}_{fps}fps_{'av' if with_audio else 'v'}.mp4"
    if not dest.exists():
        _make_clip(dest, seconds, width, height, with_audio, fps=fps)
    return dest


def valid_audio(cache_dir: Path, seconds: float = 2) -> Path:
    """A clean AAC .m4a (440 Hz sine), cached by its duration."""
    d = Path(cache_dir) / "valid"
    d.mkdir(parents=True, exist_ok=True)
    dest = d / f"audio_{seconds:g}s.m4a"
    if not dest.exists():
        _make_audio(dest, seconds)
    return dest


# --------------------------------------------------------------------------- MP4 box surgery


def boxes(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[str, int, int]]:
    """Top-level ISO-BMFF boxes in data[start:end] as (type, offset, size)."""
    end = len(data) if end is None else end
    out, pos = [], start
    while pos + 8 <= end:
        size, typ = struct.unpack(">I4s", data[pos:pos + 8])
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8:pos + 16])[0]
        elif size == 0:
            size = end - pos
        if size < 8:
            break
        out.append((typ.decode("latin-1"), pos, size))
        pos += size
    return out


def box(data: bytes, typ: str) -> tuple[int, int]:
    for t, off, size in boxes(data):
        if t == typ:
            return off, size
    raise ValueError(f"no top-level {typ} box")


def inner(data: bytes, path: str) -> tuple[int, int]:
    """Offset and size of a nested box, e.g. ``moov/trak/mdia/minf/stbl/stsz`` (first trak)."""
    parts = path.split("/")
    off, size = box(data, parts[0])
    for p in parts[1:]:
        for t, o, s in boxes(data, off + 8, off + size):
            if t == p:
                off, size = o, s
                break
        else:
            raise ValueError(f"no {p} inside {path}")
    return off, size


def _flip(data: bytearray, rng: random.Random, lo: int, hi: int, count: int) -> None:
    for _ in range(count):
        i = rng.randrange(lo, hi)
        data[i] ^= 1 << rng.randrange(8)


def _clobber(data: bytearray, rng: random.Random, lo: int, hi: int, count: int) -> None:
    """Overwrite ``count`` random bytes with random values."""
    for _ in range(count):
        data[rng.randrange(lo, hi)] = rng.randrange(256)


# --------------------------------------------------------------------------- recipes

@dataclass(frozen=True)
class _Ctx:
    fast: bytes       # faststart H.264/AAC MP4 (moov before mdat)
    late: bytes       # same, moov after mdat (ffmpeg's default layout)
    audio: bytes      # AAC .m4a
    wav: bytes        # PCM WAV
    tiny: bytes       # real H.264 at 8x8
    png: bytes        # one PNG frame
    rng: random.Random


Recipe = tuple[str, str, str, str, str, Callable[[_Ctx], bytes]]  # name, ext, kind, expected, role, build


def _truncate(src: str, frac: float | None = None, at: int | None = None):
    def build(c: _Ctx) -> bytes:
        data = getattr(c, src)
        return data[: at if at is not None else int(len(data) * frac)]
    return build


def _cut_in_moov(c: _Ctx) -> bytes:
    off, size = box(c.fast, "moov")
    return c.fast[: off + size // 2]


def _flip_in(src: str, where: str, count: int, mode: str = "flip"):
    def build(c: _Ctx) -> bytes:
        data = bytearray(getattr(c, src))
        off, size = inner(bytes(data), where) if "/" in where else box(bytes(data), where)
        lo, hi = off + 16, off + size  # keep the box header itself intact
        (_flip if mode == "flip" else _clobber)(data, c.rng, lo, hi, count)
        return bytes(data)
    return build


def _mdat_video_flip(count: int):
    """Clobber bytes inside the video samples only (first trak's chunks), keeping container intact."""
    def build(c: _Ctx) -> bytes:
        data = bytearray(c.fast)
        off, size = box(c.fast, "mdat")
        # skip the first 20% (the first GOP starts decoding cleanly) and damage the rest
        _clobber(data, c.rng, off + 16 + size // 5, off + size, count)
        return bytes(data)
    return build


def _cut_late_moov(c: _Ctx) -> bytes:
    off, _ = box(c.late, "moov")
    return c.late[: off + 64]


def _shift_stco(delta: int, keep: float):
    """Point video chunk offsets ``delta`` bytes late, after the first ``keep`` fraction of chunks."""
    def build(c: _Ctx) -> bytes:
        data = bytearray(c.fast)
        off, size = inner(c.fast, "moov/trak/mdia/minf/stbl/stco")
        (count,) = struct.unpack(">I", data[off + 12:off + 16])
        for i in range(int(count * keep), count):
            p = off + 16 + 4 * i
            (v,) = struct.unpack(">I", data[p:p + 4])
            data[p:p + 4] = struct.pack(">I", v + delta)
        return bytes(data)
    return build


def _remove_box(typ: str):
    def build(c: _Ctx) -> bytes:
        off, size = box(c.fast, typ)
        return c.fast[:off] + c.fast[off + size:]
    return build


def _patch_fourcc(c: _Ctx) -> bytes:
    data = bytearray(c.fast)
    off, size = inner(c.fast, "moov")
    i = c.fast.index(b"avc1", off, off + size)
    data[i:i + 4] = b"zzzz"
    return bytes(data)


def _patch_box_size(typ: str, value: int):
    def build(c: _Ctx) -> bytes:
        data = bytearray(c.fast)
        off, _ = box(c.fast, typ)
        data[off:off + 4] = struct.pack(">I", value)
        return bytes(data)
    return build


def _garbage_header(n: int):
    def build(c: _Ctx) -> bytes:
        return c.rng.randbytes(n) + c.fast[n:]
    return build


def _garbage_prefix(n: int):
    def build(c: _Ctx) -> bytes:
        return c.rng.randbytes(n) + c.fast
    return build


def _y4m_absurd(c: _Ctx) -> bytes:
    return b"YUV4MPEG2 W100000 H100000 F25:1 Ip A1:1 C420jpeg\nFRAME\n" + c.rng.randbytes(4096)


_HTML = (b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n<body><center><h1>502 Bad Gateway"
         b"</h1></center><hr><center>nginx/1.25.3</center></body></html>\n")
_TEXT = b"This is not a video. The upload finished but the worker wrote its log here instead.\n" * 20
_JSON = b'{"error": {"code": 404, "message": "asset not found", "request_id": "0f3c"}}\n'

RECIPES: tuple[Recipe, ...] = (
    ("zero_bytes", "mp4", "empty", "invalid_media", "video", lambda c: b""),
    ("garbage_random_64k", "mp4", "garbage", "invalid_media", "video", lambda c: c.rng.randbytes(65536)),
    ("text_file_as_mp4", "mp4", "wrong_content", "invalid_media", "video", lambda c: _TEXT),
    ("html_error_page_as_mp4", "mp4", "wrong_content", "invalid_media", "video", lambda c: _HTML),
    ("json_error_as_mp4", "mp4", "wrong_content", "invalid_media", "video", lambda c: _JSON),
    ("gzip_as_mp4", "mp4", "wrong_content", "invalid_media", "video", lambda c: gzip.compress(c.fast, mtime=0)),
    ("wav_as_mp4_for_video", "mp4", "wrong_extension", "invalid_media", "video", lambda c: c.wav),
    ("png_as_mp4_for_video", "mp4", "wrong_extension", "invalid_media", "video", lambda c: c.png),
    ("truncated_100b", "mp4", "truncated", "invalid_media", "video", _truncate("fast", at=100)),
    ("truncated_in_moov", "mp4", "truncated", "invalid_media", "video", _cut_in_moov),
    ("truncated_moov_at_end_50pct", "mp4", "truncated", "invalid_media", "video", _truncate("late", 0.5)),
    ("truncated_moov_at_end_in_moov", "mp4", "truncated", "invalid_media", "video", _cut_late_moov),
    ("truncated_mdat_50pct", "mp4", "truncated", "partly_damaged", "video", _truncate("fast", 0.5)),
    ("truncated_mdat_90pct", "mp4", "truncated", "partly_damaged", "video", _truncate("fast", 0.9)),
    ("ftyp_only", "mp4", "truncated", "invalid_media", "video", lambda c: c.fast[: box(c.fast, "ftyp")[1]]),
    ("moov_missing", "mp4", "box_missing", "invalid_media", "video", _remove_box("moov")),
    ("mdat_missing", "mp4", "box_missing", "invalid_media", "video", _remove_box("mdat")),
    ("header_moov_size_zeroed", "mp4", "bitflip_header", "invalid_media", "video", _patch_box_size("moov", 3)),
    ("header_garbage_64b", "mp4", "garbage_header", "invalid_media", "video", _garbage_header(64)),
    ("garbage_prefix_4k_valid_body", "mp4", "garbage_header", "invalid_media", "video", _garbage_prefix(4096)),
    ("moov_stsz_clobbered", "mp4", "bitflip_index", "invalid_media", "video",
     _flip_in("fast", "moov/trak/mdia/minf/stbl/stsz", 40, "clobber")),
    ("moov_stco_all_shifted", "mp4", "bitflip_index", "invalid_media", "video", _shift_stco(7, 0.0)),
    ("moov_stco_tail_shifted", "mp4", "bitflip_index", "partly_damaged", "video", _shift_stco(7, 0.5)),
    ("payload_bitflip_light", "mp4", "bitflip_payload", "partly_damaged", "video", _mdat_video_flip(24)),
    ("payload_bitflip_heavy", "mp4", "bitflip_payload", "partly_damaged", "video", _mdat_video_flip(2000)),
    ("unsupported_fourcc", "mp4", "unsupported_codec", "invalid_media", "video", _patch_fourcc),
    ("absurd_dimensions_y4m", "y4m", "absurd_dimensions", "invalid_media", "video", _y4m_absurd),
    ("absurd_dimensions_8x8", "mp4", "absurd_dimensions", "invalid_media", "video", lambda c: c.tiny),
    ("audio_payload_damaged", "m4a", "damaged_audio", "partly_damaged", "audio",
     _flip_in("audio", "mdat", 300, "clobber")),
    ("audio_garbage", "m4a", "garbage", "invalid_media", "audio", lambda c: c.rng.randbytes(32768)),
    ("audio_truncated_200b", "m4a", "truncated", "invalid_media", "audio", _truncate("audio", at=200)),
    ("video_clip_as_audio_no_audio", "mp4", "wrong_content", "invalid_media", "audio", lambda c: c.tiny),
)


# --------------------------------------------------------------------------- cache

def corpus_key(seed: int = 0) -> str:
    h = hashlib.sha256()
    h.update(Path(__file__).read_bytes())
    h.update(f"{RECIPE_VERSION}|{seed}|{ffmpeg_version()}".encode())
    return h.hexdigest()[:16]


def _load(root: Path, key: str, seed: int) -> Corpus:
    manifest = json.loads((root / "manifest.json").read_text())
    fixtures = tuple(MediaFixture(**{**f, "path": root / f["path"]}) for f in manifest["fixtures"])
    return Corpus(root=root, key=key, seed=seed, fixtures=fixtures,
                  valid_video=root / manifest["valid_video"], valid_audio=root / manifest["valid_audio"])


def ensure_corpus(cache_dir: Path, seed: int = 0) -> Corpus:
    """Build the corrupt corpus under ``cache_dir`` (or reuse it) and return it.

    Safe to call from several processes at once: each builds into its own temp
    dir and the first atomic rename wins.
    """
    cache_dir = Path(cache_dir)
    key = corpus_key(seed)
    root = cache_dir / f"corpus-{key}"
    if (root / "manifest.json").exists():
        return _load(root, key, seed)
    cache_dir.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".build-{key}-", dir=cache_dir))
    try:
        _build(build, seed)
        try:
            os.rename(build, root)
        except OSError:
            if not (root / "manifest.json").exists():
                raise
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return _load(root, key, seed)


def _build(dest: Path, seed: int) -> None:
    src = dest / "src"
    src.mkdir()
    w, h = BASE_SIZE
    fast = _make_clip(src / "valid_faststart.mp4", BASE_SECONDS, w, h, True, faststart=True)
    late = _make_clip(src / "valid_moov_at_end.mp4", BASE_SECONDS, w, h, True, faststart=False)
    audio = _make_audio(src / "valid_audio.m4a", BASE_SECONDS)
    wav = _make_audio(src / "valid_audio.wav", 1, codec="pcm")
    tiny = _make_clip(src / "tiny_8x8.mp4", 1, 8, 8, False)
    png = src / "frame.png"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48", "-frames:v", "1", str(png))
    entries = []
    for name, ext, kind, expected, role, make in RECIPES:
        # one RNG per recipe, derived from the seed and the name: adding a recipe never shifts the others
        rng = random.Random(f"{seed}:{name}")
        ctx = _Ctx(fast=fast.read_bytes(), late=late.read_bytes(), audio=audio.read_bytes(),
                   wav=wav.read_bytes(), tiny=tiny.read_bytes(), png=png.read_bytes(), rng=rng)
        rel = f"{name}.{ext}"
        (dest / rel).write_bytes(make(ctx))
        entries.append({"name": name, "path": rel, "kind": kind, "expected": expected, "role": role,
                        "note": ""})
    manifest = {"seed": seed, "ffmpeg": ffmpeg_version(), "fixtures": entries,
                "valid_video": "src/valid_faststart.mp4", "valid_audio": "src/valid_audio.m4a"}
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m media_fixtures.generate", description=__doc__)
    ap.add_argument("dest", type=Path, help="cache directory (the corpus goes into DEST/corpus-<key>)")
    ap.add_argument("--seed", type=int, default=0, help="RNG seed for bit flips and garbage (default 0)")
    args = ap.parse_args(argv)
    corpus = ensure_corpus(args.dest, args.seed)
    print(f"corpus {corpus.key} at {corpus.root}: {len(corpus)} fixtures")
    for f in corpus:
        print(f"  {f.expected:15} {f.role:5} {f.kind:18} {f.path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
