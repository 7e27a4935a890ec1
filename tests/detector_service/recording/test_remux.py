"""Recording a live RTSP camera by remuxing: ~20 s of a real GStreamer camera, checked against a
second, independent client of the same camera."""

from __future__ import annotations

import pathlib
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass

import av
import cv2
import numpy as np
import pytest

from detector_service.recording import (
    NotRecorded,
    RecordStats,
    Segment,
    SegmentIndex,
    SegmentWriter,
    export_range,
    snapshot,
)
from tests.detector_service.recording.media import (
    Seen,
    Watcher,
    file_packets,
    first_packets,
    open_rtsp,
)
from vigil.bench.rtsp import RtspCamera

FPS = 15  # the session camera's (tests/detector_service/conftest.py): 320x240, a keyframe a second
KEYFRAME_S = 1.0
SEGMENT_S = 3.0
PACKETS = 20 * FPS


@dataclass
class Recorded:
    index: SegmentIndex
    segments: list[Segment]
    stats: RecordStats
    watched: list[Seen]
    opening_at: float  # just before the recorder connected
    ended_at: float  # just after its last packet
    folder: pathlib.Path


@pytest.fixture(scope="module")
def recorded(
    rtsp_camera: RtspCamera, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Recorded]:
    folder = tmp_path_factory.mktemp("recording")
    index = SegmentIndex(folder / "index.db")
    url = rtsp_camera.url("cam1")
    # The independent client connects first, so it sees every packet the recorder sees.
    watcher = Watcher(url)
    opening_at = time.time()
    container = open_rtsp(url)
    stream = container.streams.video[0]
    writer = SegmentWriter(index, folder / "segments", "cam1", segment_s=SEGMENT_S)
    stats = writer.record(stream, first_packets(PACKETS, container.demux(stream)))
    ended_at = time.time()
    container.close()
    # Let the watcher receive a second more than the recorder did.
    seen = len(watcher.seen)
    for _ in range(200):
        if len(watcher.seen) >= seen + FPS:
            break
        time.sleep(0.05)
    watched = watcher.stop()
    yield Recorded(index, index.all_segments("cam1"), stats, watched, opening_at, ended_at, folder)
    index.close()


def test_segments_decode_and_each_starts_on_a_keyframe(recorded: Recorded) -> None:
    assert recorded.stats.segments == len(recorded.segments) >= 5
    decoded = 0
    for seg in recorded.segments:
        packets = file_packets(str(seg.path))
        assert packets[0].key
        with av.open(str(seg.path)) as container:
            frames = list(container.decode(video=0))
        # Every packet made a picture of the camera's size: nothing lost at a cut.
        assert len(frames) == len(packets)
        assert {(f.width, f.height) for f in frames} == {(320, 240)}
        assert (seg.codec, seg.width, seg.height, seg.run) == ("h264", 320, 240, 1)
        decoded += len(frames)
    # Only the packets before the first keyframe and the last one (held back until the next
    # arrives, so a truncated last packet of a dying connection is never written) are missing.
    assert PACKETS - FPS * KEYFRAME_S - 1 <= decoded < PACKETS
    assert decoded == recorded.stats.packets


def test_segments_hold_the_cameras_own_packets(recorded: Recorded) -> None:
    recorded_packets = [p for seg in recorded.segments for p in file_packets(str(seg.path))]
    watched = recorded.watched
    assert len(watched) > len(recorded_packets)
    # Byte for byte, NAL unit for NAL unit, the recording is a run of what the other client
    # received: remuxed, not re-encoded, nothing dropped or added inside. (The test pattern's
    # ball repeats its path every 2 s, so the run may match at more than one place.)
    recorded_nals = [p.nals for p in recorded_packets]
    watched_nals = [p.nals for p in watched]
    n = len(recorded_nals)
    starts = [i for i in range(len(watched)) if watched_nals[i : i + n] == recorded_nals]
    assert starts
    same = watched[starts[0] : starts[0] + n]
    assert [p.key for p in same] == [p.key for p in recorded_packets]
    # And with the camera's timing: frame intervals are unchanged within each segment.
    at = 0
    for seg in recorded.segments:
        in_file = file_packets(str(seg.path))
        received = same[at : at + len(in_file)]
        intervals = np.diff([p.t for p in in_file]), np.diff([p.t for p in received])
        assert np.allclose(*intervals, atol=1e-4)
        at += len(in_file)


def test_coverage_is_one_interval_on_the_wall_clock(recorded: Recorded) -> None:
    coverage = recorded.index.coverage("cam1", recorded.opening_at - 60, recorded.ended_at + 60)
    assert len(coverage.covered) == 1
    covered = coverage.covered[0]
    # Continuous: consecutive segments meet within 1 s (they share their boundary exactly).
    for a, b in zip(recorded.segments, recorded.segments[1:], strict=False):
        assert abs(b.start - a.end) < 1.0
    # The first recorded frame was captured while the recorder connected (the open reads ahead
    # up to a keyframe), the last one just before it stopped.
    assert recorded.opening_at - 3.0 < covered.start < recorded.opening_at + 3.0
    assert recorded.ended_at - 1.0 < covered.end < recorded.ended_at + 0.5
    # The wall-clock span is the camera's: one frame interval per recorded frame.
    assert covered.end - covered.start == pytest.approx(recorded.stats.packets / FPS, abs=0.3)
    assert [(g.start, g.end) for g in coverage.gaps] == [
        (recorded.opening_at - 60, covered.start),
        (covered.end, recorded.ended_at + 60),
    ]


def test_segments_are_cut_at_keyframes_and_indexed_with_their_media_length(
    recorded: Recorded,
) -> None:
    for seg in recorded.segments[:-1]:
        # Cut at the first keyframe at or after SEGMENT_S.
        assert SEGMENT_S - 1e-3 <= seg.duration < SEGMENT_S + KEYFRAME_S + 1e-3
    for seg in recorded.segments:
        packets = file_packets(str(seg.path))
        media = packets[-1].t - packets[0].t + 1 / FPS
        assert seg.duration == pytest.approx(media, abs=0.02)
        assert seg.bytes == seg.path.stat().st_size


def test_recording_files_are_private(recorded: Recorded) -> None:
    for path in recorded.folder.rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path


def test_export_joins_a_range_without_reencoding(
    recorded: Recorded, tmp_path: pathlib.Path
) -> None:
    first = recorded.segments[0]
    start, end = first.start + 4.3, first.start + 13.6  # across four segments
    result = export_range(recorded.index, "cam1", start, end, tmp_path / "range.mp4")
    # It starts at the keyframe at or before the asked start and ends with the frame shown at
    # the asked end.
    assert start - KEYFRAME_S < result.start <= start
    assert end <= result.end < end + 1 / FPS + 1e-3
    assert abs((result.end - result.start) - (end - start)) < KEYFRAME_S
    assert result.gaps == []
    assert not result.cut_at_run_change
    with av.open(str(result.path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
    assert len(frames) == result.packets
    times = [float(f.time) for f in frames if f.time is not None]
    assert len(times) == len(frames)
    assert times[0] == 0
    assert times[-1] + 1 / FPS == pytest.approx(result.end - result.start, abs=0.01)
    # The same packets as the segments, joined.
    recorded_nals = [p.nals for seg in recorded.segments for p in file_packets(str(seg.path))]
    exported = [p.nals for p in file_packets(str(result.path))]
    at = recorded_nals.index(exported[0])
    assert recorded_nals[at : at + len(exported)] == exported


def test_export_reports_what_it_covers_at_the_recordings_edges(
    recorded: Recorded, tmp_path: pathlib.Path
) -> None:
    last = recorded.segments[-1]
    result = export_range(
        recorded.index, "cam1", last.start - 1.0, last.end + 30, tmp_path / "tail.mp4"
    )
    assert result.end == pytest.approx(last.end, abs=0.01)
    with pytest.raises(NotRecorded):
        export_range(recorded.index, "cam1", last.end + 10, last.end + 20, tmp_path / "none.mp4")
    assert not (tmp_path / "none.mp4").exists()


def test_snapshot_shows_the_frame_of_that_moment(recorded: Recorded) -> None:
    seg = recorded.segments[2]
    at = seg.start + 1.77  # mid-GOP: decoded from the keyframe before
    shot = snapshot(recorded.index, "cam1", at)
    image = cv2.imdecode(np.frombuffer(shot.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    assert image.shape == (240, 320, 3)
    assert (shot.width, shot.height) == (320, 240)
    assert at - 1 / FPS < shot.at <= at
    # The picture is that frame's: closer to it than to its neighbours (the ball moves).
    with av.open(str(seg.path)) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    k = round((shot.at - seg.start) * FPS)
    diffs = [
        float(np.abs(image.astype(int) - frames[i].astype(int)).mean()) for i in (k - 1, k, k + 1)
    ]
    assert diffs[1] < min(diffs[0], diffs[2])
    with pytest.raises(NotRecorded):
        snapshot(recorded.index, "cam1", recorded.ended_at + 60)


def _mean_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())
