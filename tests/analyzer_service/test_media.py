"""Probing and seek-based frame sampling, called in-process."""

from __future__ import annotations

import pathlib
from fractions import Fraction

import cv2
import pytest

from analyzer_service import media
from tests.analyzer_service.helpers import frame_index_of, write_h264


def test_probe_reads_the_container_facts(short_video: pathlib.Path) -> None:
    probe = media.probe(str(short_video))
    assert probe == media.ProbeResult(
        duration_s=5.0, fps=30.0, width=1280, height=720, frame_count=150, codec="mpeg4"
    )


def test_probe_names_h264(long_video: pathlib.Path) -> None:
    probe = media.probe(str(long_video))
    assert probe.codec == "h264"
    assert probe.frame_count == 390
    assert probe.duration_s == pytest.approx(3900.0)


@pytest.mark.parametrize("content", [b"", b"<!doctype html><html><body>hi</body></html>" * 50])
def test_probe_refuses_what_is_not_a_video(tmp_path: pathlib.Path, content: bytes) -> None:
    path = tmp_path / "fake.mp4"
    path.write_bytes(content)
    with pytest.raises(media.MediaError, match="not a readable video"):
        media.probe(str(path))


def test_sampled_frames_are_the_frames_at_their_timestamps(
    short_video: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    fps = 30.0
    targets = [0.0, 1.0, 37 / fps, 2.5, 149 / fps]
    frames = media.sample_frames(
        str(short_video), targets, str(tmp_path), max_side=1280, jpeg_quality=95
    )
    assert [f.target_s for f in frames] == sorted(targets)
    for frame in frames:
        assert abs(frame.time_s - frame.target_s) < 1 / fps
        image = cv2.imread(frame.path)
        assert image is not None
        assert image.shape == (720, 1280, 3)
        # The pixels say which frame this is: it must be the one the timestamp names.
        assert frame_index_of(image) == round(frame.target_s * fps) == frame.index


def test_sampling_cost_is_bounded_by_the_keyframe_interval(tmp_path: pathlib.Path) -> None:
    # 3000 frames with a keyframe every 25: reaching any frame decodes at most one interval.
    path = tmp_path / "gop25.mp4"
    write_h264(path, frames=3000, rate=Fraction(25), width=64, height=48, gop=25)
    targets = [10.0, 60.0, 119.0]
    frames = media.sample_frames(
        str(path), targets, str(tmp_path / "out"), max_side=64, jpeg_quality=90
    )
    for frame in frames:
        assert frame.decoded <= 25 + 4  # the encoder's lookahead may delay a frame or two
        assert abs(frame.time_s - frame.target_s) < 1 / 25
        image = cv2.imread(frame.path)
        assert image is not None
        assert frame_index_of(image) % 256 == round(frame.target_s * 25) % 256


def test_frames_are_scaled_to_the_largest_side(
    short_video: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    (frame,) = media.sample_frames(
        str(short_video), [1.0], str(tmp_path), max_side=320, jpeg_quality=80
    )
    image = cv2.imread(frame.path)
    assert image is not None
    assert image.shape == (180, 320, 3)


def test_a_target_past_the_end_gets_the_last_frame(
    short_video: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    (frame,) = media.sample_frames(
        str(short_video), [9.0], str(tmp_path), max_side=1280, jpeg_quality=90
    )
    assert frame.time_s == pytest.approx(149 / 30)


def test_codec_names_from_fourcc() -> None:
    assert media.codec_name(int.from_bytes(b"avc1", "little")) == "h264"
    assert media.codec_name(int.from_bytes(b"FMP4", "little")) == "mpeg4"
    assert media.codec_name(int.from_bytes(b"abcd", "little")) == "abcd"
