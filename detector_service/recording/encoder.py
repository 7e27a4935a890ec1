"""Encoding for sources without an encoded stream (webcams, the test pattern): once, cheaply."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from fractions import Fraction
from typing import TYPE_CHECKING

from detector_service.backends.base import Image

if TYPE_CHECKING:
    from detector_service.recording.writer import VideoPacket

# Milliseconds: frames carry their capture time, and the packets keep it (epoch milliseconds),
# which the writer takes as wall time as is.
TIME_BASE = Fraction(1, 1000)


def _codec_options(codec: str) -> dict[str, str]:
    if codec == "libx264":
        # ultrafast: the least CPU per frame; zerolatency: no lookahead or B-frames, so each
        # frame's packet comes out at once; forced-idr: a keyframe we ask for is a cut point.
        return {"preset": "ultrafast", "tune": "zerolatency", "forced-idr": "1"}
    return {"qscale": "5"}  # MPEG-4 part 2, FFmpeg's own encoder: a fixed, fair quality


class FrameEncoder:
    """Encodes BGR images into H.264 (libx264; MPEG-4 part 2 where FFmpeg was built without it)
    with a keyframe every ``keyframe_s`` of capture time, so segments cut at that rhythm.

    ``stream`` describes the encoded stream for ``SegmentWriter.record`` (with
    ``pts_are_wall_clock=True``). It belongs to a header-only MP4 in memory: FFmpeg fills a
    stream's codec parameters (the decoder configuration the segments' headers need) when its
    container starts, and this one never writes a packet.
    """

    def __init__(self, width: int, height: int, fps: float, *, keyframe_s: float = 2.0) -> None:
        import av

        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        self._holder = av.open(io.BytesIO(), "w", format="mp4")
        stream = self._holder.add_stream(
            codec, rate=Fraction(fps).limit_denominator(1000), options=_codec_options(codec)
        )
        assert isinstance(stream, av.VideoStream)
        self.stream = stream
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = "yuv420p"
        self.stream.codec_context.time_base = TIME_BASE
        # A long GOP by count; keyframes come by time instead (frames may arrive unevenly).
        self.stream.codec_context.gop_size = max(1, round(fps * keyframe_s * 4))
        self._holder.start_encoding()
        self.keyframe_s = keyframe_s
        self._last_ms: int | None = None
        self._last_key: float | None = None

    def encode(self, image: Image, captured_at: float) -> list[VideoPacket]:
        """Encode one frame captured at ``captured_at`` (seconds since the epoch)."""
        import av

        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        ms = round(captured_at * 1000)
        if self._last_ms is not None and ms <= self._last_ms:
            ms = self._last_ms + 1  # two frames in one millisecond: keep timestamps increasing
        self._last_ms = ms
        frame.pts, frame.time_base = ms, TIME_BASE
        if self._last_key is None or captured_at - self._last_key >= self.keyframe_s:
            frame.pict_type = av.video.frame.PictureType.I
            self._last_key = captured_at
        return list(self.stream.encode(frame))

    def flush(self) -> list[VideoPacket]:
        return list(self.stream.encode(None))

    def packets(self, frames: Iterable[tuple[Image, float]]) -> Iterator[VideoPacket]:
        """Encode ``(image, captured_at)`` pairs; the encoder is flushed when they end."""
        for image, captured_at in frames:
            yield from self.encode(image, captured_at)
        yield from self.flush()

    def close(self) -> None:
        self._holder.close()

    def __enter__(self) -> FrameEncoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
