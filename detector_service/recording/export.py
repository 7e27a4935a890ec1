"""Reading the recording back: a time range as one MP4 (joined, not re-encoded) and snapshots."""

from __future__ import annotations

import dataclasses
import itertools
import pathlib
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import cv2

from detector_service.private import private_file
from detector_service.recording.contract import (
    JOIN_TOLERANCE_S,
    Interval,
    RecordingIndex,
    Segment,
)
from detector_service.recording.writer import MAX_STEP_S, copy_stream

if TYPE_CHECKING:
    import av

    from detector_service.recording.writer import VideoPacket

# The export's clock: 90 kHz, MPEG's, which every camera frame rate divides well enough.
EXPORT_TIME_BASE = Fraction(1, 90_000)


class NotRecorded(LookupError):
    """Nothing of the source is recorded at the asked time."""


@dataclass(frozen=True)
class Export:
    """An exported range: what it actually covers (it starts at the keyframe at or before the
    asked start) and the gaps inside, which play as a held picture."""

    path: pathlib.Path
    start: float
    end: float
    gaps: list[Interval]
    packets: int
    # The range went on into a run with other stream parameters (a resolution change): one MP4
    # track cannot hold both without re-encoding, so the export ends where that run begins.
    cut_at_run_change: bool


@dataclass(frozen=True)
class Snapshot:
    jpeg: bytes
    at: float  # the shown frame's wall time
    width: int
    height: int


@dataclass
class _Timed:
    packet: VideoPacket
    pts: float  # wall time of presentation
    dts: float  # wall time of decoding


class _SegmentReader:
    """One segment's packets with wall times: its start is its first packet's presentation."""

    def __init__(self, seg: Segment) -> None:
        import av

        self.container = av.open(str(seg.path))
        self.stream = self.container.streams.video[0]
        self.seg = seg

        self.first: int | None = None

    def wall(self, ts: int, time_base: Fraction) -> float:
        assert self.first is not None
        return self.seg.start + float((ts - self.first) * time_base)

    def packets(self) -> Iterator[_Timed]:
        for packet in self.container.demux(self.stream):
            if packet.pts is None or packet.dts is None or not packet.size:
                continue
            if self.first is None:
                self.first = packet.pts
            tb = Fraction(packet.time_base)
            yield _Timed(packet, self.wall(packet.pts, tb), self.wall(packet.dts, tb))

    def close(self) -> None:
        self.container.close()


def export_range(
    index: RecordingIndex, source: str, start: float, end: float, dest: pathlib.Path
) -> Export:
    """Join ``source``'s packets of [start, end) into ``dest`` (MP4, index up front so a player
    seeks before it has the whole file). Timestamps keep wall-clock spacing: a second into the
    file is a second after ``Export.start``, across gaps too."""
    import av

    segments = index.segments(source, start, end)
    if not segments:
        raise NotRecorded(f"nothing of {source} is recorded in that range")
    n = next((i for i, s in enumerate(segments) if s.params != segments[0].params), len(segments))
    run = segments[:n]
    private_file(dest)
    try:
        with av.open(str(dest), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            joiner = _join(run, start, end, out)
        if joiner is None or not joiner.count:
            raise NotRecorded(f"no picture of {source} in that range")
    except BaseException:
        dest.unlink(missing_ok=True)  # half an export is no export
        raise
    actual_end = joiner.end()
    gaps = [
        Interval(a.end, b.start)
        for a, b in itertools.pairwise(run)
        if b.start - a.end > JOIN_TOLERANCE_S and a.end < actual_end and b.start > joiner.start
    ]
    return Export(dest, joiner.start, actual_end, gaps, joiner.count, n < len(segments))


class _Joiner:
    """Writes packets on one clock: seconds since the first one's wall time, in 90 kHz."""

    def __init__(self, out: av.container.OutputContainer, stream: av.VideoStream) -> None:
        self.out, self.stream = out, stream
        self.start = self.last = 0.0
        self.last_dts = -1
        self.count = 0
        # The last decoding-time interval: the last frame is shown that long.
        self.step = 0.0
        self.prev: _Timed | None = None

    def write(self, item: _Timed) -> None:
        if not self.count:
            self.start = item.pts
        # Float rounding across segments must not make decoding times repeat or go backwards.
        dts = max(round((item.dts - self.start) / EXPORT_TIME_BASE), self.last_dts + 1)
        pts = max(round((item.pts - self.start) / EXPORT_TIME_BASE), dts)
        packet = item.packet
        packet.pts, packet.dts, packet.time_base = pts, dts, EXPORT_TIME_BASE
        packet.stream = self.stream
        self.out.mux(packet)
        self.last_dts = dts
        if self.prev is not None and item.dts - self.prev.dts <= MAX_STEP_S:
            self.step = item.dts - self.prev.dts
        self.prev = item
        self.last = max(self.last, item.pts)
        self.count += 1

    def end(self) -> float:
        return self.last + self.step


def _join(
    run: list[Segment], start: float, end: float, out: av.container.OutputContainer
) -> _Joiner | None:
    joiner: _Joiner | None = None
    for seg in run:
        reader = _SegmentReader(seg)
        try:
            timed = list(reader.packets())
            if joiner is None:
                timed = timed[_last_key_at_or_before(timed, start) :]
                joiner = _Joiner(out, copy_stream(out, reader.stream))
            elif timed and joiner.prev is not None and timed[0].dts <= joiner.prev.dts:
                # Two connections' segments may overlap by their clock mappings' error (a
                # looped file starting again): decoding times must go on, so the later one
                # follows the earlier one (a one-tick nudge does not survive the muxer's
                # coarser time base, which then refuses the packet).
                shift = joiner.prev.dts + (joiner.step or 1 / 30) - timed[0].dts
                timed = [
                    dataclasses.replace(t, pts=t.pts + shift, dts=t.dts + shift) for t in timed
                ]
            for item in timed:
                if item.pts >= end:
                    return joiner
                joiner.write(item)
        finally:
            reader.close()
    return joiner


def _last_key_at_or_before(timed: list[_Timed], at: float) -> int:
    best = 0
    for i, item in enumerate(timed):
        if item.pts > at:
            break
        if item.packet.is_keyframe:
            best = i
    return best


def snapshot(index: RecordingIndex, source: str, at: float, *, quality: int = 90) -> Snapshot:
    """The picture shown at ``at``: decoded from the keyframe at or before it, as JPEG."""
    segments = index.segments(source, at, at + 1e-6)
    if not segments:
        raise NotRecorded(f"nothing of {source} is recorded at {at}")
    reader = _SegmentReader(segments[-1])
    try:
        wanted: list[_Timed] = []
        for item in reader.packets():
            if item.dts > at:
                break
            if item.packet.is_keyframe:
                wanted = []  # decoding starts over at each keyframe
            wanted.append(item)
        frames = [f for item in wanted for f in item.packet.decode()]
        frames += reader.stream.codec_context.decode(None)
        shown = None
        shown_at = 0.0
        for frame in frames:
            if frame.pts is None or frame.time_base is None:
                continue
            t = reader.wall(frame.pts, Fraction(frame.time_base))
            if t <= at + 1e-6 and (shown is None or t >= shown_at):
                shown, shown_at = frame, t
    finally:
        reader.close()
    if shown is None:
        raise NotRecorded(f"no picture of {source} at {at}")
    image = shown.to_ndarray(format="bgr24")
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return Snapshot(jpeg.tobytes(), shown_at, shown.width, shown.height)
