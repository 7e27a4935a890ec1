"""Sources without an encoded stream: frames encoded once, then recorded like a camera's."""

from __future__ import annotations

import pathlib
import time

import av
import numpy as np
import pytest

from detector_service.recording import FrameEncoder, SegmentIndex, SegmentWriter, snapshot
from detector_service.testpattern import TestPattern

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
