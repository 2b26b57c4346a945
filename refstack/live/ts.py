"""Just enough MPEG-TS to relay, record and splice a live stream at packet level.

The platform never re-encodes: ingest, relay, encoder recording and backup recording all
carry the publisher's own 188-byte packets, so every copy shares one timeline (the
publisher's video DTS). That is what lets the final recording splice the encoder's
sessions with backup packets for the time the encoder missed.
"""

from __future__ import annotations

from dataclasses import dataclass

PACKET = 188
SYNC = 0x47
CLOCK_HZ = 90_000.0


class TsAligner:
    """Turns an arbitrary byte stream into whole, sync-aligned TS packets."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.dropped = 0  # bytes skipped to regain sync

    def feed(self, data: bytes) -> bytes:
        self._buf += data
        buf = self._buf
        start = 0
        # Regain sync: a packet start is a 0x47 followed by another 0x47 one packet later
        # (or the end of the buffer).
        while start < len(buf) and not (
            buf[start] == SYNC and (start + PACKET >= len(buf) or buf[start + PACKET] == SYNC)
        ):
            start += 1
        self.dropped += start
        usable = (len(buf) - start) // PACKET * PACKET
        out = bytes(buf[start : start + usable])
        del buf[: start + usable]
        return out


def _timestamp(b: bytes, i: int) -> int:
    return (
        ((b[i] >> 1) & 0x07) << 30
        | b[i + 1] << 22
        | (b[i + 2] >> 1) << 15
        | b[i + 3] << 7
        | b[i + 4] >> 1
    )


@dataclass
class Packets:
    """Packets of one file with a clock per packet.

    ``clock[i]`` is the DTS (else PTS), in seconds, of the video PES that most recently
    started at or before packet ``i`` (None before the first). ``starts`` are indices of
    packets that begin a video PES: the only safe splice points.
    """

    data: bytes
    clock: list[float | None]
    starts: list[int]

    def __len__(self) -> int:
        return len(self.clock)

    def packet(self, i: int) -> bytes:
        return self.data[i * PACKET : (i + 1) * PACKET]

    @property
    def first_time(self) -> float | None:
        return self.clock[self.starts[0]] if self.starts else None

    @property
    def last_time(self) -> float | None:
        return self.clock[self.starts[-1]] if self.starts else None


def parse(data: bytes) -> Packets:
    """Index whole TS packets (trailing partial packet ignored)."""
    data = TsAligner().feed(data)
    n = len(data) // PACKET
    clock: list[float | None] = [None] * n
    starts: list[int] = []
    video_pid: int | None = None
    current: float | None = None
    for k in range(n):
        o = k * PACKET
        b1 = data[o + 1]
        pid = ((b1 & 0x1F) << 8) | data[o + 2]
        if b1 & 0x40:  # payload_unit_start_indicator
            afc = (data[o + 3] >> 4) & 0x3
            p = o + 4
            if afc & 0x2:
                p += 1 + data[o + 4]
            if afc & 0x1 and p + 14 <= o + PACKET and data[p : p + 3] == b"\x00\x00\x01":
                sid = data[p + 3]
                if 0xE0 <= sid <= 0xEF and (video_pid is None or pid == video_pid):
                    video_pid = pid
                    flags = data[p + 7] >> 6
                    if flags & 0x2:
                        ts = _timestamp(data, p + 14 if flags == 0x3 else p + 9)
                        current = ts / CLOCK_HZ
                        starts.append(k)
        clock[k] = current
    return Packets(data=data, clock=clock, starts=starts)


@dataclass
class Splice:
    data: bytes
    filled: list[tuple[float, float]]  # time ranges taken from the backup


def splice(sessions: list[Packets], backup: Packets | None) -> Splice:
    """The encoder's sessions in time order, with backup packets filling every hole.

    Sessions are cut at video PES starts so no partial frame leaks in; backup packets are
    taken where their clock lies strictly between the covered ranges.
    """
    usable = sorted((s for s in sessions if s.starts), key=lambda s: s.first_time)
    out = bytearray()
    filled: list[tuple[float, float]] = []
    cursor: float | None = None  # last clock value emitted

    def fill(upto: float | None) -> None:
        if backup is None or not len(backup):
            return
        first: float | None = None
        last: float | None = None
        for i in range(len(backup)):
            t = backup.clock[i]
            if cursor is None:
                ok = t is None or upto is None or t < upto
            else:
                ok = t is not None and t > cursor and (upto is None or t < upto)
            if ok:
                out.extend(backup.packet(i))
                if t is not None:
                    first = t if first is None else first
                    last = t
        if first is not None:
            filled.append((first, last))

    for s in usable:
        if cursor is not None and s.last_time <= cursor:
            continue  # wholly covered already (two encoders, or an overlap)
        fill(s.first_time)
        begin = next(i for i in s.starts if cursor is None or s.clock[i] > cursor)
        out.extend(s.data[begin * PACKET :])
        cursor = s.last_time
    fill(None)
    return Splice(data=bytes(out), filled=filled)
