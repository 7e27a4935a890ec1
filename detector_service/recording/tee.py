"""A source's recording thread: what the capture thread tees off goes to a ``SegmentWriter`` here.

The capture thread must never wait for the disk, and the recording must never lose a packet
without saying so. Between them is a queue bounded in bytes (``max_bytes``). When it is full (the
disk stalled for longer than the queue holds), the packet that does not fit is not queued, the
connection's recording is cut there (its open segment closes at the last queued packet), and
recording resumes at the next keyframe that fits: the lost stretch is a gap in the coverage like
a camera outage, counted in ``cuts`` and ``dropped`` and logged. A cut never corrupts a segment:
a recording always resumes on a keyframe.

Two kinds of connection feed it. A stream's (``begin_packets``): the camera's encoded packets,
copied as they are demuxed (the capture thread decodes the originals). A source without an
encoded stream (``begin_frames``): pictures, copied before detection draws on them, encoded here
by ``FrameEncoder`` so the capture thread does not pay for that either.
"""

from __future__ import annotations

import collections
import io
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from detector_service.backends.base import Image
from detector_service.recording.encoder import FrameEncoder
from detector_service.recording.writer import SegmentWriter

if TYPE_CHECKING:
    import av

    from detector_service.recording.writer import VideoPacket

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Packets:
    """A stream's connection begins; ``template`` belongs to ``holder``, closed after it ends."""

    template: av.VideoStream
    holder: av.container.OutputContainer


@dataclass(frozen=True)
class _Frames:
    """A connection of pictures begins: encoded here, a keyframe every ``keyframe_s``."""

    fps: float
    keyframe_s: float


@dataclass(frozen=True)
class _Frame:
    image: Image
    captured_at: float


class _End:
    """The connection ended (or was cut)."""


class _Stop:
    """The source is no longer recorded: finish and end the thread."""


_Item = _Packets | _Frames | _Frame | _End | _Stop | object


def clone(packet: VideoPacket) -> VideoPacket:
    """A packet of our own: the capture thread decodes the original, which may retime it."""
    import av

    copy = av.Packet(bytes(packet))
    copy.pts, copy.dts = packet.pts, packet.dts
    copy.time_base = packet.time_base
    copy.duration = packet.duration
    copy.is_keyframe = packet.is_keyframe
    return cast("VideoPacket", copy)


def template_of(stream: av.VideoStream) -> _Packets:
    """A copy of a stream's codec parameters, owned by the recording thread."""
    import av

    holder = av.open(io.BytesIO(), "w", format="mp4")
    return _Packets(holder.add_stream_from_template(stream), holder)


class RecordingTee:
    """One source's recording thread and the bounded queue that feeds it. The ``begin_*``,
    ``put_*`` and ``end`` calls come from one capture thread at a time."""

    def __init__(self, writer: SegmentWriter, max_bytes: int) -> None:
        self.writer = writer
        self.max_bytes = max_bytes
        self._cond = threading.Condition()
        self._items: collections.deque[tuple[_Item, int]] = collections.deque()
        self._bytes = 0
        # The connection being fed. A stream's codec parameters are kept here, in a container of
        # the capture side's own: each recording of the connection (one more after every cut)
        # gets a copy, which the recording thread closes when it is done with it.
        self._begun: _Packets | _Frames | None = None
        self._cut = False  # overflowed: waiting for a keyframe that fits
        self._stopped = False
        #: Times the recording was cut because the queue was full, and what was lost to it.
        self.cuts = 0
        self.dropped = 0
        #: Inside a connection's recording (a segment open or about to).
        self.recording = False
        self._thread = threading.Thread(
            target=self._run, name=f"record-{writer.source}", daemon=True
        )
        self._thread.start()

    # --- capture thread --------------------------------------------------------------------------

    def begin_packets(self, stream: av.VideoStream) -> None:
        self._begin(template_of(stream))

    def begin_frames(self, fps: float, keyframe_s: float) -> None:
        self._begin(_Frames(fps, keyframe_s))

    def put_packet(self, packet: VideoPacket) -> None:
        if packet.size and packet.pts is not None:
            # With its arrival: the writer maps the camera's clock to ours by it, and may take
            # the packet from the queue much later.
            self._put((clone(packet), time.time()), packet.size, packet.is_keyframe)

    def put_frame(self, image: Image, captured_at: float) -> None:
        # A copy: the processing thread draws the detections on the capture's picture.
        self._put(_Frame(image.copy(), captured_at), image.nbytes, True)

    def end(self) -> None:
        with self._cond:
            self._end()
            self._cut = False

    def _end(self) -> None:
        if self._begun is not None and not self._cut:
            self._push(_End(), 0)
        if isinstance(self._begun, _Packets):
            self._begun.holder.close()
        self._begun = None

    def _begin(self, start: _Packets | _Frames) -> None:
        self.end()
        with self._cond:
            if self._stopped:
                if isinstance(start, _Packets):
                    start.holder.close()
                return
            self._begun = start
            self._push(self._session(), 0)

    def _put(self, item: object, size: int, key: bool) -> None:
        with self._cond:
            if self._begun is None or self._stopped:
                return
            fits = self._bytes + size <= self.max_bytes
            if self._cut:
                if not (fits and key):
                    self.dropped += 1
                    return
                # Resumes on a keyframe, as a new connection of the same stream (same run).
                self._cut = False
                self._push(self._session(), 0)
            elif not fits:
                self._cut = True
                self.cuts += 1
                self.dropped += 1
                self._push(_End(), 0)
                log.warning(
                    "recording of %s cut: %d bytes waiting for the disk (cut %d times)",
                    self.writer.source,
                    self._bytes,
                    self.cuts,
                )
                return
            self._push(item, size)

    def _session(self) -> _Packets | _Frames:
        """What starts one recording of the current connection."""
        begun = self._begun
        assert begun is not None
        return template_of(begun.template) if isinstance(begun, _Packets) else begun

    def _push(self, item: _Item, size: int) -> None:
        self._items.append((item, size))
        self._bytes += size
        self._cond.notify()

    # --- any thread ------------------------------------------------------------------------------

    def stop(self) -> None:
        """Finish what is queued, then end the thread (``join`` waits for it)."""
        with self._cond:
            self._end()
            self._stopped = True
            self._push(_Stop(), 0)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    # --- recording thread ------------------------------------------------------------------------

    def _get(self) -> _Item:
        with self._cond:
            while not self._items:
                self._cond.wait()
            item, size = self._items.popleft()
            self._bytes -= size
            return item

    def _run(self) -> None:
        item = self._get()
        while not isinstance(item, _Stop):
            # Anything else is the rest of a connection whose recording failed.
            item = self._record(item) if isinstance(item, _Packets | _Frames) else self._get()

    def _record(self, start: _Packets | _Frames) -> _Item:
        """Record one connection; returns the item that ended it when that is not ``_End``."""
        ended: list[_Item] = []

        def until_end() -> Iterator[object]:
            while True:
                item = self._get()
                if isinstance(item, _End | _Stop | _Packets | _Frames):
                    ended.append(item)
                    return
                yield item

        self.recording = True
        try:
            if isinstance(start, _Packets):
                with start.holder:
                    self.writer.record_arrivals(start.template, _arrivals(until_end()))
            else:
                self._encode(start, until_end())
        except Exception:
            log.exception("recording of %s failed; it resumes with the next connection",
                          self.writer.source)  # fmt: skip
        finally:
            self.recording = False
        if not ended:
            return self._get()
        return ended[0] if not isinstance(ended[0], _End) else self._get()

    def _encode(self, start: _Frames, frames: Iterator[object]) -> None:
        first = next(frames, None)
        if not isinstance(first, _Frame):
            return
        height, width = first.image.shape[:2]
        with FrameEncoder(width, height, start.fps, keyframe_s=start.keyframe_s) as encoder:
            pairs = _pairs(first, frames)
            self.writer.record(encoder.stream, encoder.packets(pairs), pts_are_wall_clock=True)


def _arrivals(items: Iterator[object]) -> Iterator[tuple[VideoPacket, float]]:
    for item in items:
        if isinstance(item, tuple):
            yield item


def _pairs(first: _Frame, rest: Iterator[object]) -> Iterator[tuple[Image, float]]:
    yield first.image, first.captured_at
    for item in rest:
        if isinstance(item, _Frame):
            yield item.image, item.captured_at
