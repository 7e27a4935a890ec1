"""The segment writer: a camera's encoded packets, remuxed into short fragmented-MP4 files."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import pathlib
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

from detector_service.private import private_dir, private_file
from detector_service.recording.contract import RecordingIndex, Segment

if TYPE_CHECKING:
    from typing import TypeAlias

    import av

    VideoPacket: TypeAlias = av.Packet[av.VideoStream]

SEGMENT_S = 10.0
# Fragmented MP4: every keyframe closes a fragment on disk, so a segment cut short by a crash or
# a power cut stays playable up to its last keyframe, and a segment still being written can be
# read; the moov box is written first and empty, so no rewrite happens at close.
MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"
# A timestamp step larger than this (or backwards) is a camera that reset its clock without
# dropping the connection: the mapping to wall time starts over.
MAX_STEP_S = 5.0
# How far the segments' times may drift from the camera's clock mapped to ours (a camera's clock
# runs at its own rate) before a cut corrects them.
DRIFT_S = 2.0


@dataclass(frozen=True)
class StreamParams:
    """What must stay equal for segments to be joined into one file without re-encoding."""

    codec: str
    width: int
    height: int
    digest: str

    @classmethod
    def of(cls, stream: av.VideoStream) -> StreamParams:
        ctx = stream.codec_context
        extradata = bytes(ctx.extradata or b"")
        codec = ctx.codec.canonical_name  # "h264" for the camera's stream and for libx264's
        key = f"{codec}:{ctx.width}x{ctx.height}:".encode() + extradata
        return cls(codec, ctx.width, ctx.height, hashlib.sha256(key).hexdigest()[:16])


@dataclass(frozen=True)
class RecordStats:
    segments: int
    packets: int
    bytes: int


def copy_stream(out: av.container.OutputContainer, template: av.VideoStream) -> av.VideoStream:
    """A stream of ``out`` that takes ``template``'s packets as they are."""
    stream = out.add_stream_from_template(template)
    if template.codec_context.codec.canonical_name == "hevc":
        # hvc1 (parameter sets in the header) is the tag Safari and QuickTime play.
        stream.codec_tag = "hvc1"
    return stream


class _Open:
    """A segment being written: its container and the first and last packet times (seconds of
    the camera's clock)."""

    def __init__(self, row: Segment, template: av.VideoStream, first: VideoPacket) -> None:
        import av

        self.row = row
        self.path = path = row.path
        private_file(path)
        # Each packet goes to the file at once (no I/O buffer left to lose in a crash); the
        # muxer itself keeps the open fragment, one GOP, in memory.
        options = {"movflags": MOVFLAGS, "flush_packets": "1"}
        self.container = av.open(str(path), "w", format="mp4", options=options)
        self.stream = copy_stream(self.container, template)
        assert first.dts is not None
        self.dts0 = first.dts
        self.packets = 0
        self.first_s = self.last_s = _seconds(first.pts, first)
        # The least (arrival - camera time) of this segment's packets.
        self.least_lag = float("inf")

    def write(self, packet: VideoPacket, t: float) -> None:
        import av

        # A copy: the caller's packet may also go to a decoder, which needs its own timestamps.
        out = av.Packet(bytes(packet))
        assert packet.pts is not None
        assert packet.dts is not None
        out.pts = packet.pts - self.dts0
        out.dts = packet.dts - self.dts0
        out.duration = packet.duration
        out.time_base = packet.time_base
        out.is_keyframe = packet.is_keyframe
        out.stream = self.stream
        self.container.mux(out)
        self.packets += 1
        self.last_s = max(self.last_s, t)  # the latest shown, which B-frames make not the last

    def close(self) -> int:
        self.container.close()
        return self.path.stat().st_size


class SegmentWriter:
    """Writes one source's segments and indexes each one as it closes.

    ``record`` takes one connection's packets; the caller reconnects and calls it again. The
    first packet's arrival anchors the camera's clock to ours (the mapping then follows the
    least-delayed packet, since a packet can arrive late but never before it was captured).
    """

    def __init__(
        self,
        index: RecordingIndex,
        root: pathlib.Path,
        source: str,
        *,
        segment_s: float = SEGMENT_S,
        writer: str = "",
    ) -> None:
        self.index = index
        self.source = source
        self.segment_s = segment_s
        # The replica writing ("" for a service on its own): in the index and the file names,
        # so replicas sharing a recordings directory never write the same file.
        self.writer = writer
        # Recordings show what the cameras saw: for the service's user alone, folders included.
        private_dir(root)
        self.root = private_dir(root / _dir_name(source))

    def record(
        self,
        stream: av.VideoStream,
        packets: Iterable[VideoPacket],
        *,
        pts_are_wall_clock: bool = False,
    ) -> RecordStats:
        """Record until ``packets`` ends (or raises, which propagates after the open segment is
        closed and indexed). ``pts_are_wall_clock``: the packets' timestamps are already seconds
        since the epoch (frames we encoded ourselves, stamped when captured). Each packet's
        arrival is when it is taken from ``packets``."""
        arrivals = ((packet, time.time()) for packet in packets)
        return self.record_arrivals(stream, arrivals, pts_are_wall_clock=pts_are_wall_clock)

    def record_arrivals(
        self,
        stream: av.VideoStream,
        packets: Iterable[tuple[VideoPacket, float]],
        *,
        pts_are_wall_clock: bool = False,
    ) -> RecordStats:
        """``record``, for packets that arrived earlier than they are written (queued on the way
        from the camera): each with its arrival (epoch seconds)."""
        params = StreamParams.of(stream)
        run = self.index.run_for(self.source, params.digest)
        clock = _Clock(pts_are_wall_clock)
        seg: _Open | None = None
        # Where this connection's previous segment ended: the next one starts exactly there,
        # and lasts exactly its media, so rounding and jitter never open gaps or overlaps.
        joined_at: float | None = None
        written: list[Segment] = []
        count = 0
        # The decoding time of the previous packet, and the interval since it: a segment ends
        # one interval after its last frame.
        last_dts: float | None = None
        step = 0.0

        def close(seg: _Open, end_s: float, *, at_cut: bool = False) -> Segment:
            start = joined_at if joined_at is not None else clock.wall(seg.first_s)
            end = start + (end_s - seg.first_s)
            if at_cut:
                clock.catch_up(seg.least_lag)
                if abs(clock.wall(end_s) - end) > DRIFT_S:
                    # The camera's clock runs at another rate than ours: this segment absorbs
                    # the correction, and the next one starts on the current mapping.
                    end = max(clock.wall(end_s), start)
            done = self._close(seg, start, end)
            written.append(done)
            return done

        try:
            for packet, arrived in _all_but_last(packets):
                t = _seconds(packet.pts, packet)
                dts = _seconds(packet.dts, packet)
                if last_dts is not None and 0 < dts - last_dts <= MAX_STEP_S:
                    step = dts - last_dts
                elif last_dts is not None:
                    if seg is not None:
                        close(seg, seg.last_s + step)
                        seg = joined_at = None
                    clock.reset()
                last_dts = dts
                lag = clock.observe(t, arrived)
                if seg is None and not packet.is_keyframe:
                    continue  # nothing before the first keyframe decodes
                if seg is not None and packet.is_keyframe and t - seg.first_s >= self.segment_s:
                    joined_at = close(seg, t, at_cut=True).end
                    seg = None
                if seg is None:
                    seg = self._open(clock.wall(t), run, params, stream, packet)
                seg.least_lag = min(seg.least_lag, lag)
                seg.write(packet, t)
                count += 1
        finally:
            if seg is not None:
                close(seg, seg.last_s + step)
        return RecordStats(len(written), count, sum(s.bytes for s in written))

    def recover(self, *, others: bool = False) -> list[Segment]:
        """Finish the segments a writer of this source left open when it died. Each keeps what
        reached the disk (every fragment, a GOP each, but the one being written); one with no
        picture goes. Those of this writer (its own earlier run: call before ``record``), or
        with ``others`` those of other replicas (once this one owns the source, they are dead
        or fenced out)."""
        recovered = []
        for row in self.index.unfinished(self.source):
            if (row.writer != self.writer) != others:
                continue
            if others and not row.path.exists():
                continue  # not on a volume this replica sees: left to one that sees it
            span = _media_span(row.path)
            if span is None:
                self.index.remove(row.id)
                row.path.unlink(missing_ok=True)
                continue
            stat = row.path.stat()
            # The open row's start is the first packet's arrival, which the open's read-ahead
            # can delay by up to a GOP (the writer corrects it at close, which never came). The
            # last packet was written before the file's last change: the segment ends by then.
            start = min(row.start, stat.st_mtime - span)
            done = dataclasses.replace(row, start=start, end=start + span, bytes=stat.st_size)
            self.index.finish(done)
            recovered.append(done)
        return recovered

    def _open(
        self,
        start: float,
        run: int,
        params: StreamParams,
        template: av.VideoStream,
        first: VideoPacket,
    ) -> _Open:
        row = Segment(
            source=self.source,
            run=run,
            start=start,
            end=start,
            path=self._path(start),
            bytes=0,
            codec=params.codec,
            width=params.width,
            height=params.height,
            params=params.digest,
            writer=self.writer,
        )
        return _Open(self.index.begin(row), template, first)

    def _close(self, seg: _Open, start: float, end: float) -> Segment:
        done = dataclasses.replace(seg.row, start=start, end=end, bytes=seg.close())
        self.index.finish(done)
        return done

    def _path(self, start: float) -> pathlib.Path:
        day = datetime.datetime.fromtimestamp(start, datetime.UTC).strftime("%Y-%m-%d")
        folder = private_dir(self.root / day)
        stem = f"{round(start * 1000)}"
        if self.writer:
            stem += f"-{_dir_name(self.writer)}"
        path = folder / f"{stem}.mp4"
        n = 1
        while path.exists():  # a reconnect within the same millisecond
            path = folder / f"{stem}-{n}.mp4"
            n += 1
        return path


class _Clock:
    """Maps the camera's clock (seconds) to ours: wall = camera time + offset."""

    def __init__(self, fixed: bool) -> None:
        self.fixed = fixed
        self.offset: float | None = 0.0 if fixed else None

    def reset(self) -> None:
        if not self.fixed:
            self.offset = None

    def observe(self, t: float, arrived: float) -> float:
        """Note a packet's arrival; returns its lag (arrival minus camera time)."""
        if self.fixed:
            return 0.0
        lag = arrived - t
        # A packet can arrive late (a burst after the open's probing, a network stall) but
        # never before it was captured: the least lag is the truest mapping.
        self.offset = lag if self.offset is None else min(self.offset, lag)
        return lag

    def wall(self, t: float) -> float:
        assert self.offset is not None
        return self.offset + t

    def catch_up(self, least_lag: float) -> None:
        """After a segment whose every packet lagged well behind the mapping: the camera's clock
        runs slower than ours (a faster one lowers the least lag by itself)."""
        if self.offset is not None and not self.fixed and least_lag - self.offset > DRIFT_S:
            self.offset = least_lag


def _all_but_last(
    packets: Iterable[tuple[VideoPacket, float]],
) -> Iterator[tuple[VideoPacket, float]]:
    """The packets that can be placed in time, each with its arrival, all but the last.

    When a connection dies, FFmpeg's RTP depacketiser hands over the frame it was assembling:
    a truncated packet that does not decode. Which packet is the last is known only when the
    connection ends, so each one waits for the next (a frame's delay, nothing for a recording).
    """
    held: tuple[VideoPacket, float] | None = None
    for packet, arrived in packets:
        if packet.pts is None or packet.dts is None or not packet.size:
            continue  # RTSP's first packet can lack timestamps; it cannot be placed in time
        if held is not None:
            yield held
        held = (packet, arrived)


def _media_span(path: pathlib.Path) -> float | None:
    """How long the pictures in a segment file last; None if it has none (or no header)."""
    import av

    times: list[float] = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            for packet in container.demux(stream):
                if packet.pts is not None and packet.size:
                    times.append(_seconds(packet.pts, packet))
    except (av.FFmpegError, OSError, IndexError):
        pass  # a file cut off in its header, or missing; what was read counts
    if not times:
        return None
    times.sort()
    step = times[-1] - times[-2] if len(times) > 1 else 0.0
    return times[-1] - times[0] + step


def _seconds(ts: int | None, packet: VideoPacket) -> float:
    assert ts is not None
    return float(ts * Fraction(packet.time_base))


def _dir_name(source: str) -> str:
    # Readable where the id is, unique where two ids differ only in characters a path can't hold.
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", source)[:48].lstrip(".") or "source"
    return f"{safe}-{hashlib.sha256(source.encode()).hexdigest()[:8]}"
