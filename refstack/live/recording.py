"""Final recording of a live stream, and the gap report (AVideo runbook: local backup
recording; admin "force re-record").

Files under ``LIVE_DATA_DIR``::

    backup/<stream>/backup_<ms>.ts               what the platform received (one per publish)
    encoders/<ip>/<stream>/session_<ms>_<pid>.ts what an encoder recorded (one per connection)
    final/<stream>/final.ts, report.json         the assembled recording and its report

Coverage and gaps are measured with ffprobe over the video packet timestamps of each file,
never assumed from what the splicer meant to do.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from refstack.live import ts

FFPROBE_TIMEOUT_S = 60.0


@dataclass
class Gap:
    start: float
    end: float
    duration: float


@dataclass
class Coverage:
    """What ffprobe saw in one or more files: video packet times, merged into ranges."""

    files: list[str] = field(default_factory=list)
    packets: int = 0
    start: float | None = None
    end: float | None = None
    ranges: list[tuple[float, float]] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)  # holes between ranges
    max_gap_s: float = 0.0


def probe_times(path: Path) -> list[float]:
    """Video packet timestamps (DTS, else PTS) of ``path``, by ffprobe."""
    proc = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time,dts_time",
         "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, timeout=FFPROBE_TIMEOUT_S, check=False,
    )
    times: list[float] = []
    for line in proc.stdout.splitlines():
        parts = [p for p in line.strip().split(",") if p and p != "N/A"]
        if parts:
            times.append(float(parts[-1] if len(parts) > 1 else parts[0]))
    return times


def coverage(paths: list[Path], threshold: float, within: tuple[float, float] | None = None) -> Coverage:
    """Merge the packet times of ``paths`` into ranges; a hole longer than ``threshold`` is a gap.

    With ``within`` (the stream's extent), holes at either end of it count as gaps too.
    """
    cov = Coverage(files=[str(p) for p in paths])
    times: list[float] = []
    for p in paths:
        t = probe_times(p)
        cov.packets += len(t)
        times.extend(t)
    times.sort()
    ranges: list[list[float]] = []
    for t in times:
        if ranges and t - ranges[-1][1] <= threshold:
            ranges[-1][1] = max(ranges[-1][1], t)
        else:
            ranges.append([t, t])
    cov.ranges = [(round(a, 3), round(b, 3)) for a, b in ranges]
    if ranges:
        cov.start, cov.end = round(ranges[0][0], 3), round(ranges[-1][1], 3)
    edges = [r[:] for r in ranges]
    if within is not None:
        lo, hi = within
        edges = [[lo, lo]] + edges + [[hi, hi]] if edges else [[lo, lo], [hi, hi]]
    for (_, a_end), (b_start, _) in zip(edges, edges[1:]):
        if b_start - a_end > threshold:
            cov.gaps.append(Gap(round(a_end, 3), round(b_start, 3), round(b_start - a_end, 3)))
    cov.max_gap_s = max((g.duration for g in cov.gaps), default=0.0)
    return cov


def backup_files(data_dir: Path, stream: str) -> list[Path]:
    return sorted((data_dir / "backup" / stream).glob("backup_*.ts"))


def encoder_files(data_dir: Path, stream: str) -> dict[str, list[Path]]:
    """Encoder IP -> its session files for ``stream``."""
    out: dict[str, list[Path]] = {}
    root = data_dir / "encoders"
    if root.is_dir():
        for ip_dir in sorted(root.iterdir()):
            files = sorted((ip_dir / stream).glob("session_*.ts"))
            files = [f for f in files if f.stat().st_size > 0]
            if files:
                out[ip_dir.name] = files
    return out


def build(data_dir: Path, stream: str, *, from_backup_only: bool, gap_threshold_s: float,
          alert_window_s: float) -> dict:
    """Assemble ``final/<stream>/final.ts`` and return (and store) the report."""
    backups = backup_files(data_dir, stream)
    encoders = encoder_files(data_dir, stream)
    sessions = [f for files in encoders.values() for f in files]
    if from_backup_only and not backups:
        raise FileNotFoundError(f"stream {stream!r} has no backup recording to re-record from")
    if not backups and not sessions:
        raise FileNotFoundError(f"stream {stream!r} has no recording at all (no backup, no encoder session)")

    backup_packets = ts.parse(b"".join(p.read_bytes() for p in backups)) if backups else None
    if from_backup_only:
        data, filled = backup_packets.data, []
        source = "backup"
    else:
        result = ts.splice([ts.parse(p.read_bytes()) for p in sessions], backup_packets)
        data, filled = result.data, result.filled
        source = "encoder+backup" if backups else "encoder"

    out_dir = data_dir / "final" / stream
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / "final.ts"
    tmp = out_dir / f".final.{os.getpid()}.ts"
    tmp.write_bytes(data)
    tmp.replace(final)

    backup_cov = coverage(backups, gap_threshold_s) if backups else None
    enc_cov = coverage(sessions, gap_threshold_s) if sessions else None
    starts = [c.start for c in (backup_cov, enc_cov) if c and c.start is not None]
    ends = [c.end for c in (backup_cov, enc_cov) if c and c.end is not None]
    extent = (min(starts), max(ends)) if starts else None
    final_cov = coverage([final], gap_threshold_s, within=extent)
    if enc_cov is not None and extent is not None:
        enc_cov = coverage(sessions, gap_threshold_s, within=extent)

    report = {
        "stream": stream,
        "source": source,
        "file": str(final),
        "bytes": final.stat().st_size,
        "built_at": time.time(),
        "gap_threshold_s": gap_threshold_s,
        "alert_window_s": alert_window_s,
        "stream_extent": {"start": extent[0], "end": extent[1]} if extent else None,
        "final": asdict(final_cov),
        "backup": asdict(backup_cov) if backup_cov else None,
        "encoder": asdict(enc_cov) if enc_cov else None,
        "encoder_sessions": {ip: [str(f) for f in files] for ip, files in encoders.items()},
        "filled_from_backup": [{"start": a, "end": b} for a, b in filled],
        # The runbook's bar: the whole stream, no hole longer than the alert window.
        "covers_stream": bool(extent) and final_cov.max_gap_s <= alert_window_s,
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    return report


def coverage_report(data_dir: Path, stream: str, gap_threshold_s: float) -> dict:
    """What is recorded so far, per source, measured with ffprobe; builds nothing."""
    backups = backup_files(data_dir, stream)
    return {
        "stream": stream,
        "gap_threshold_s": gap_threshold_s,
        "backup": asdict(coverage(backups, gap_threshold_s)) if backups else None,
        "encoders": {
            ip: asdict(coverage(files, gap_threshold_s))
            for ip, files in encoder_files(data_dir, stream).items()
        },
    }


def last_report(data_dir: Path, stream: str) -> dict | None:
    path = data_dir / "final" / stream / "report.json"
    return json.loads(path.read_text()) if path.is_file() else None
