"""Render a :class:`TemplateSpec` to a verified H.264/AAC MP4.

Steps, each an ffmpeg in its own process group under one shared deadline:

1. ffprobe gate on every input (probe.py; R §一.1 错误1/错误2).
2. Encoder choice with libx264 fallback (encoder.py; R §一.1 错误3).
3. Video in segments of ``segment_seconds`` (R §一.2 方案1: 5-minute segments) so
   memory stays flat however long the video is.
4. Final step: concat demuxer ``-c copy`` + audio + metadata + faststart. This is
   the "99 %" step of R §八: it runs under the same deadline and watchdog, and
   its ffmpeg error text ends up in the error.
5. ffprobe verification of the temp output (duration, streams, size), then an
   atomic rename. R §八 "批量任务显示完成,但部分视频缺失 -> 存储空间是否已满":
   never report success without a valid file; ENOSPC -> ``storage_full``.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from refstack.broken import is_broken
from refstack.render import proc
from refstack.render.encoder import FALLBACK_ENCODER, select_encoder
from refstack.render.errors import (
    InvalidMedia,
    RenderError,
    RenderFailed,
    RenderTimeout,
    ResourceExhausted,
    StorageFull,
)
from refstack.render.probe import ProbeResult, check_readable, probe_input
from refstack.render.spec import RenderLimits, TemplateSpec

ProgressCallback = Callable[[float], None]
#: Share of the progress bar the segments take; the final mux/metadata step takes the rest.
SEGMENTS_SHARE = 0.95
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
)
_ENOSPC_TEXT = ("No space left on device", "Disk quota exceeded")
_OOM_TEXT = ("Cannot allocate memory", "Out of memory", "out of memory")
#: What ffmpeg says about a damaged input when it carries on anyway (exit 0): the strict pass treats it
#: as a decode error, so the render gets its one tolerant retry (R §一.1 错误2) instead of silently
#: keeping whatever the strict pass made of the damaged part.
_DAMAGE_TEXT = ("partial file", "Invalid data found", "error while decoding", "corrupt", "Invalid NAL")
_ENCODER_TEXT = ("Unknown encoder", "Encoder not found", "Error while opening encoder", "Cannot load libcuda",
                 "No capable devices found", "No NVENC capable devices", "InitializeEncoder failed")


@dataclass(frozen=True)
class RenderResult:
    """What a successful render produced. ``encoder`` is the encoder actually used."""

    output: Path
    encoder: str
    requested_encoder: str
    encoder_fallback_reason: str | None
    duration: float
    size_bytes: int
    segments: int
    #: True when a partly damaged input needed the ``-err_detect ignore_err`` retry.
    tolerant_retry: bool
    elapsed: float
    #: Largest ru_maxrss of any ffmpeg child of this render, KiB.
    peak_rss_kb: int
    inputs: tuple[ProbeResult, ...] = field(default_factory=tuple)


class _Render:
    def __init__(self, spec: TemplateSpec, output: Path, limits: RenderLimits,
                 on_progress: ProgressCallback | None, ffmpeg: str, ffprobe: str) -> None:
        self.spec, self.output, self.limits = spec, output, limits
        self.on_progress, self.ffmpeg, self.ffprobe = on_progress, ffmpeg, ffprobe
        self.start = time.monotonic()
        self.deadline = self.start + limits.total_timeout
        self.tolerant = False
        self.retried = False
        self.peak_rss = 0
        self.reported = 0.0
        self.encoder = spec.encoder

    # ----------------------------------------------------------------- helpers
    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise RenderTimeout(f"render exceeded its total time limit of {self.limits.total_timeout:.1f}s",
                                reason="deadline", limit=self.limits.total_timeout)
        return left

    def progress(self, value: float) -> None:
        if self.on_progress is not None and value > self.reported:
            self.reported = value
            self.on_progress(value)

    def asset_input(self, path: Path, offset: float = 0.0, loop: bool = True) -> list[str]:
        args = []
        if self.tolerant:
            args += ["-err_detect", "ignore_err"]  # R §一.1 错误2: 使用更宽容的解码器
        if loop:
            args += ["-stream_loop", "-1"]
        if offset > 0:
            args += ["-ss", f"{offset:.3f}"]
        return args + ["-i", "file:" + str(path)]

    def run(self, argv: list[str], expected_s: float, what: str, base: float, share: float,
            cwd: Path) -> proc.RunResult:
        def cb(frac: float) -> None:
            self.progress(base + share * frac)

        if not self.tolerant:
            argv = argv[:1] + ["-xerror"] + argv[1:]  # strict first: decode errors fail the step
        res = proc.run(argv, timeout=self.remaining(), stall_timeout=self.limits.stall_timeout,
                       expected_us=int(expected_s * 1e6), on_progress=cb, what=what, cwd=cwd)
        self.peak_rss = max(self.peak_rss, res.max_rss_kb)
        return res

    def failure(self, res: proc.RunResult, what: str, assets: list[Path]) -> str:
        """Classify a failed step: 'encoder' | 'decode'; raises for everything final."""
        text = res.stderr
        tail = res.stderr_tail()
        if any(t in text for t in _ENOSPC_TEXT):
            raise StorageFull(f"{what}: output volume {str(self.output.parent)!r} is full "
                              "(No space left on device); free space or move the output volume", tail,
                              path=str(self.output))
        if res.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL) or any(t in text for t in _OOM_TEXT):
            raise ResourceExhausted(f"{what}: ffmpeg was killed (exit {res.returncode}) or ran out of memory; "
                                    "R §一.2: lower segment_seconds / resolution or raise the memory limit",
                                    tail, returncode=res.returncode)
        if any(t in text for t in _ENCODER_TEXT) and self.encoder != FALLBACK_ENCODER:
            return "encoder"
        if assets and not self.tolerant:
            return "decode"
        if assets:
            names = ", ".join(repr(str(a)) for a in assets)
            raise InvalidMedia(f"{what}: input {names} could not be decoded even with -err_detect ignore_err",
                               tail, path=str(assets[0]))
        raise RenderFailed(f"{what}: ffmpeg exited {res.returncode}", tail, returncode=res.returncode)

    def step(self, build: Callable[[], list[str]], expected_s: float, what: str, base: float, share: float,
             cwd: Path, assets: list[Path]) -> None:
        """Run one ffmpeg step; at most one encoder fallback and one tolerant retry per render."""
        while True:
            res = self.run(build(), expected_s, what, base, share, cwd)
            damaged = bool(assets) and not self.tolerant and any(t in res.stderr for t in _DAMAGE_TEXT)
            if res.returncode == 0 and not damaged:
                return
            if is_broken("render_complete_without_output") and any(t in res.stderr for t in _ENOSPC_TEXT):
                return  # planted bug: ENOSPC ignored
            kind = self.failure(res, what, assets)
            if kind == "encoder" and not is_broken("render_no_encoder_fallback"):
                self.fallback_reason = f"{self.encoder} failed at init: {res.stderr_tail(2)}"
                self.encoder = FALLBACK_ENCODER  # R §一.1 错误3: 使用CPU编码器
                continue
            if kind == "decode" and not self.retried and not is_broken("render_no_tolerant_retry"):
                self.tolerant = self.retried = True  # R §一.1 错误2: ONE retry, tolerant decoding
                continue
            if kind == "decode":
                names = ", ".join(repr(str(a)) for a in assets)
                raise InvalidMedia(f"{what}: input {names} has decode errors (partly damaged)",
                                   res.stderr_tail(), path=str(assets[0]))
            raise RenderFailed(f"{what}: encoder {self.encoder!r} failed", res.stderr_tail(),
                               encoder=self.encoder)

    # ----------------------------------------------------------------- stages
    def gate(self) -> tuple[ProbeResult, ...]:
        found = []
        for path, role in ((self.spec.background_video, "video"), (self.spec.audio, "audio")):
            if path is None:
                continue
            if is_broken("render_no_probe_gate"):
                continue  # planted bug: no ffprobe gate
            found.append(probe_input(path, role, timeout=min(self.limits.probe_timeout, self.remaining()),
                                     deep=self.limits.deep_probe, ffprobe=self.ffprobe, ffmpeg=self.ffmpeg))
        return tuple(found)

    def segment_argv(self, index: int, offset: float, length: float, bg_duration: float | None,
                     name: str) -> list[str]:
        s = self.spec
        argv = [self.ffmpeg, "-hide_banner", "-v", "error", "-y"]
        if s.background_video is not None:
            start = math.fmod(offset, bg_duration) if bg_duration else 0.0
            argv += self.asset_input(s.background_video, start)
            chain = (f"[0:v]scale={s.width}:{s.height}:force_original_aspect_ratio=decrease,"
                     f"pad={s.width}:{s.height}:(ow-iw)/2:(oh-ih)/2:color={s.background_color},"
                     f"fps={s.fps},setsar=1")
        else:
            argv += ["-f", "lavfi", "-i", f"color=c={s.background_color}:s={s.width}x{s.height}:r={s.fps}"]
            chain = "[0:v]null"
        size = s.font_size or max(12, s.height // 12)
        font = "fontfile=font.ttf:" if os.path.exists(self.font_path or "") else ""
        chain += (f",drawtext={font}textfile=title.txt:fontcolor={s.text_color}:fontsize={size}"
                  f":x=(w-text_w)/2:y=(h-text_h)/2,format=yuv420p[v]")
        argv += ["-filter_complex", chain, "-map", "[v]", "-an", "-t", f"{length:.3f}", "-c:v", self.encoder]
        if self.encoder in ("libx264", "libx264rgb"):
            argv += ["-preset", s.preset, "-crf", str(s.crf)]
        argv += ["-g", str(s.fps * 2), "-f", "mp4", name]
        return argv

    def final_argv(self, tmp_name: str) -> list[str]:
        s = self.spec
        argv = [self.ffmpeg, "-hide_banner", "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", "list.txt"]
        if s.audio is not None:
            argv += self.asset_input(s.audio)
        else:
            argv += ["-f", "lavfi", "-i", "anullsrc=r=48000:cl=stereo"]
        argv += ["-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac", "-b:a", s.audio_bitrate]
        if not is_broken("render_final_step_unbounded"):
            argv += ["-t", f"{s.duration:.3f}"]  # the looped audio ends with the video: no endless 99 %
        argv += ["-metadata", f"title={s.title}", "-movflags", "+faststart", "-f", "mp4", tmp_name]
        return argv

    def verify(self, path: Path) -> float:
        """ffprobe the finished temp file: size > 0, H.264 + AAC, duration within tolerance."""
        size = path.stat().st_size if path.exists() else 0
        res = proc.run([self.ffprobe, "-hide_banner", "-v", "error", "-show_format", "-show_streams", "-of", "json",
                        "file:" + str(path)], timeout=min(60.0, self.remaining()), keep_stdout=True,
                       what="output verification")
        info = json.loads(res.stdout or b"{}") if res.returncode == 0 else {}
        codecs = {st.get("codec_type"): st.get("codec_name") for st in info.get("streams", [])}
        try:
            duration = float((info.get("format") or {}).get("duration"))
        except (TypeError, ValueError):
            duration = -1.0
        problems = []
        if size <= 0:
            problems.append("file is empty or missing")
        if codecs.get("video") != "h264" or codecs.get("audio") != "aac":
            problems.append(f"streams are {codecs or 'unreadable'}, expected h264 + aac")
        if abs(duration - self.spec.duration) > self.limits.duration_tolerance:
            problems.append(f"duration {duration:.2f}s, expected {self.spec.duration:.2f}s "
                            f"± {self.limits.duration_tolerance}s")
        if problems:
            free = shutil.disk_usage(path.parent).free
            cls = StorageFull if free < 1024 * 1024 else RenderFailed
            raise cls(f"output {str(path)!r} failed verification: {'; '.join(problems)} "
                      f"({free} bytes free on the output volume)", res.stderr_tail(), path=str(self.output))
        return duration

    def execute(self) -> RenderResult:
        s = self.spec
        self.output.parent.mkdir(parents=True, exist_ok=True)
        inputs = self.gate()
        if is_broken("render_no_probe_gate"):
            bg_duration = None
        else:
            bg_duration = next((p.duration for p in inputs if p.role == "video"), None)
        choice = (select_encoder(s.encoder, self.ffmpeg) if not is_broken("render_no_encoder_fallback")
                  else None)
        self.encoder = choice.used if choice else s.encoder
        self.fallback_reason = choice.fallback_reason if choice else None

        seg_len = self.limits.segment_seconds
        if is_broken("render_no_segments") or seg_len <= 0:
            seg_len = s.duration  # planted bug: one pass however long
        count = max(1, math.ceil(s.duration / seg_len - 1e-9))
        self.font_path = next((f for f in FONT_CANDIDATES if os.path.exists(f)), None)

        work = Path(tempfile.mkdtemp(prefix=f".render-{self.output.stem}-", dir=self.output.parent))
        tmp_out = self.output.with_name(f".{self.output.name}.{os.getpid()}.partial.mp4")
        try:
            try:
                (work / "title.txt").write_text(s.title, encoding="utf-8")
                if self.font_path:
                    os.symlink(self.font_path, work / "font.ttf")  # short relative name, no escaping
            except OSError as exc:
                self._os_error(exc, "preparing the work dir")
            names = []
            for i in range(count):
                offset = i * seg_len
                length = min(seg_len, s.duration - offset)
                name = f"seg_{i:05d}.mp4"
                names.append(name)
                assets = [s.background_video] if s.background_video else []
                self.step(lambda: self.segment_argv(i, offset, length, bg_duration, name), length,
                          f"segment {i + 1}/{count}", SEGMENTS_SHARE * offset / s.duration,
                          SEGMENTS_SHARE * length / s.duration, work, assets)
            try:
                (work / "list.txt").write_text("".join(f"file '{n}'\n" for n in names))
            except OSError as exc:
                self._os_error(exc, "writing the concat list")
            # R §八 "卡在99%": the audio + metadata step runs under the same deadline and watchdog.
            self.step(lambda: self.final_argv(str(tmp_out)), s.duration, "final audio/metadata step",
                      SEGMENTS_SHARE, 1 - SEGMENTS_SHARE, work, [s.audio] if s.audio else [])
            if is_broken("render_complete_without_output"):
                duration = s.duration  # planted bug: no verification
                size = tmp_out.stat().st_size if tmp_out.exists() else 0
            else:
                duration = self.verify(tmp_out)
                size = tmp_out.stat().st_size
            try:
                if tmp_out.exists() or not is_broken("render_complete_without_output"):
                    os.replace(tmp_out, self.output)  # atomic: the final name only ever holds a verified file
            except OSError as exc:
                self._os_error(exc, "renaming the output into place")
        finally:
            shutil.rmtree(work, ignore_errors=True)
            if tmp_out.exists():
                tmp_out.unlink(missing_ok=True)
        self.progress(1.0)
        return RenderResult(
            output=self.output, encoder=self.encoder, requested_encoder=s.encoder,
            encoder_fallback_reason=self.fallback_reason, duration=duration, size_bytes=size, segments=count,
            tolerant_retry=self.retried, elapsed=time.monotonic() - self.start, peak_rss_kb=self.peak_rss,
            inputs=inputs,
        )

    def _os_error(self, exc: OSError, doing: str) -> None:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageFull(f"{doing}: output volume {str(self.output.parent)!r} is full: {exc}",
                              path=str(self.output)) from exc
        raise RenderFailed(f"{doing}: {exc}") from exc


def render(
    spec: TemplateSpec,
    output: Path | str,
    *,
    limits: RenderLimits = RenderLimits(),
    on_progress: ProgressCallback | None = None,
    ffmpeg: str = "ffmpeg",
    ffprobe: str = "ffprobe",
) -> RenderResult:
    """Render ``spec`` to ``output`` (an .mp4 path) or raise a :class:`RenderError`.

    ``on_progress(fraction)`` is called from the calling thread with a
    non-decreasing value in [0, 1]; 1.0 only after the output is verified and
    in place. An exception raised by the callback (or delivered to the calling
    thread, e.g. Celery's SoftTimeLimitExceeded) kills the running ffmpeg
    group before it propagates.
    """
    job = _Render(spec, Path(output).absolute(), limits, on_progress, ffmpeg, ffprobe)
    try:
        return job.execute()
    except StorageFull:
        if not is_broken("render_complete_without_output"):
            raise
        # planted bug (R §八 "显示完成,但视频缺失"): a full volume is reported as a completed render
        return RenderResult(output=job.output, encoder=job.encoder, requested_encoder=spec.encoder,
                            encoder_fallback_reason=None, duration=spec.duration, size_bytes=0, segments=0,
                            tolerant_retry=False, elapsed=time.monotonic() - job.start, peak_rss_kb=job.peak_rss)


__all__ = ["ProgressCallback", "RenderError", "RenderResult", "check_readable", "render"]
