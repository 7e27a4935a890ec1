"""Sources without an encoded stream: frames encoded once, then recorded like a camera's."""

from __future__ import annotations

import io
import pathlib
import time
from collections.abc import Iterator
from fractions import Fraction
from typing import TYPE_CHECKING

import av
import numpy as np
import pytest

from detector_service.recording import (
    FrameEncoder,
    SegmentIndex,
    SegmentWriter,
    export_range,
    snapshot,
)
from detector_service.testpattern import TestPattern

if TYPE_CHECKING:
    from detector_service.recording.writer import VideoPacket

FPS = 10


def test_raw_frames_are_encoded_into_cut_segments_on_their_capture_times(
    tmp_path: pathlib.Path,
) -> None:
    index = SegmentIndex(tmp_path / "index.db")
    writer = SegmentWriter(index, tmp_path / "segments", "pattern", segment_s=2.0)
    pattern = TestPattern(320, 240)
    # Captured a minute ago: the recording's times are the frames', not the encoder's.
    start = time.time() - 60
    images = [pattern.render(n, start + n / FPS) for n in range(7 * FPS)]
    with FrameEncoder(320, 240, FPS, keyframe_s=1.0) as encoder:
        stats = writer.record(
            encoder.stream,
            encoder.packets((image, start + n / FPS) for n, image in enumerate(images)),
            pts_are_wall_clock=True,
        )
    segments = index.all_segments("pattern")
    # Every frame but the last (held back until a next one that never came).
    assert stats.packets == len(images) - 1
    assert [seg.codec for seg in segments] == ["h264"] * len(segments)
    assert [round(seg.duration, 3) for seg in segments] == [2.0, 2.0, 2.0, 0.9]
    assert segments[0].start == pytest.approx(start, abs=1e-3)
    coverage = index.coverage("pattern", start, start + 10)
    assert [(c.start, c.end) for c in coverage.covered] == [
        pytest.approx((start, start + 6.9), abs=1e-3)
    ]
    decoded: list[np.ndarray] = []
    for seg in segments:
        with av.open(str(seg.path)) as container:
            frames = list(container.decode(video=0))
        assert frames[0].key_frame
        decoded += [f.to_ndarray(format="bgr24") for f in frames]
    assert len(decoded) == stats.packets
    # The pictures are the frames given, encoded at a fair quality.
    for image, got in zip(images, decoded, strict=False):
        assert _psnr(image, got) > 30
    # A snapshot from an encoded recording is the frame of that moment.
    shot = snapshot(index, "pattern", start + 3.05)
    assert shot.at == pytest.approx(start + 3.0, abs=1e-3)
    assert (shot.width, shot.height) == (320, 240)
    index.close()


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float(10 * np.log10(255**2 / max(mse, 1e-9)))


def test_h265_is_recorded_and_exported_as_hvc1(tmp_path: pathlib.Path) -> None:
    """Many cameras send H.265: its packets take the same path, tagged as Safari plays them."""
    holder = av.open(io.BytesIO(), "w", format="mp4")
    stream = holder.add_stream(
        "libx265", rate=FPS, options={"preset": "ultrafast", "x265-params": "log-level=none"}
    )
    assert isinstance(stream, av.VideoStream)
    stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
    stream.codec_context.time_base = Fraction(1, 1000)
    holder.start_encoding()
    start = time.time() - 60
    pattern = TestPattern(160, 120)

    def packets() -> Iterator[VideoPacket]:
        for n in range(4 * FPS):
            frame = av.VideoFrame.from_ndarray(pattern.render(n, start), format="bgr24")
            frame.pts, frame.time_base = round((start + n / FPS) * 1000), Fraction(1, 1000)
            if n % FPS == 0:
                frame.pict_type = av.video.frame.PictureType.I
            yield from stream.encode(frame)
        yield from stream.encode(None)

    index = SegmentIndex(tmp_path / "index.db")
    writer = SegmentWriter(index, tmp_path / "segments", "h265", segment_s=2.0)
    stats = writer.record(stream, packets(), pts_are_wall_clock=True)
    holder.close()
    segments = index.all_segments("h265")
    assert [seg.codec for seg in segments] == ["hevc", "hevc"]
    result = export_range(index, "h265", start, start + 10, tmp_path / "h265.mp4")
    for path in [seg.path for seg in segments] + [result.path]:
        with av.open(str(path)) as container:
            assert container.streams.video[0].codec_context.codec_tag == "hvc1"
    with av.open(str(result.path)) as container:
        assert len(list(container.decode(video=0))) == stats.packets == result.packets
    index.close()
