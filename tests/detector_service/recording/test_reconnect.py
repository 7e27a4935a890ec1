"""A camera that goes away and comes back: a gap, and a new run when its stream changed."""

from __future__ import annotations

import itertools
import pathlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import av
import pytest

from detector_service.recording import Interval, SegmentIndex, SegmentWriter, export_range
from tests.detector_service.recording.media import open_rtsp
from vigil.bench.rtsp import RtspCamera

if TYPE_CHECKING:
    from detector_service.recording.writer import VideoPacket

FPS = 15
PACKETS = 3 * FPS


@dataclass(frozen=True)
class Up:
    started: float  # before the camera process started: it captured nothing earlier
    stopped: float  # after it was killed: it captured nothing later


def _kill_after(
    camera: RtspCamera, count: int, packets: Iterator[VideoPacket]
) -> Iterator[VideoPacket]:
    """The camera's packets, killing its process after ``count``: the connection then ends as
    a real camera's does when it loses power."""
    for n, packet in enumerate(packets):
        if n == count:
            camera.stop()
        yield packet


@pytest.fixture(scope="module")
def restarts(tmp_path_factory: pytest.TempPathFactory) -> tuple[SegmentIndex, list[Up]]:
    folder = tmp_path_factory.mktemp("restarts")
    index = SegmentIndex(folder / "index.db")
    writer = SegmentWriter(index, folder / "segments", "door", segment_s=2.0)
    ups: list[Up] = []
    # Up at 320x240, then down; up at 256x192 (a new run), down, and up at 256x192 again.
    for width, height in ((320, 240), (256, 192), (256, 192)):
        started = time.time()
        camera = RtspCamera(("door",), width=width, height=height, fps=FPS, keyframe_s=0.5)
        camera.start()
        try:
            with open_rtsp(camera.url()) as container:
                stream = container.streams.video[0]
                writer.record(stream, _kill_after(camera, PACKETS, container.demux(stream)))
        finally:
            camera.stop()
        ups.append(Up(started, time.time()))
    return index, ups


def test_a_restart_is_a_gap_and_a_new_size_a_new_run(
    restarts: tuple[SegmentIndex, list[Up]],
) -> None:
    index, ups = restarts
    segments = index.all_segments("door")
    sizes = {seg.run: (seg.width, seg.height) for seg in segments}
    assert sizes == {1: (320, 240), 2: (256, 192)}
    coverage = index.coverage("door", ups[0].started - 10, ups[-1].stopped + 10)
    assert len(coverage.covered) == 3
    # Each covered stretch lies inside the time its camera was up, and the gaps between them
    # span the time it was down.
    for part, up in zip(coverage.covered, ups, strict=True):
        # (Times follow the packets' arrival: a little latency later than the camera's.)
        assert up.started <= part.start < part.end <= up.stopped + 0.5
        # Nearly all of what was recorded: the packets before the first keyframe are not.
        assert part.end - part.start > (PACKETS - FPS * 0.5) / FPS - 0.2
    for a, b, before, after in zip(
        coverage.covered, coverage.covered[1:], ups, ups[1:], strict=False
    ):
        assert Interval(a.end, b.start) in coverage.gaps
        assert before.stopped - 1.0 < a.end
        assert b.start >= after.started


def test_an_export_stops_where_the_stream_changed(
    restarts: tuple[SegmentIndex, list[Up]], tmp_path: pathlib.Path
) -> None:
    index, ups = restarts
    result = export_range(index, "door", ups[0].started, ups[-1].stopped, tmp_path / "a.mp4")
    assert result.cut_at_run_change
    first_run = [seg for seg in index.all_segments("door") if seg.run == 1]
    assert result.end == pytest.approx(first_run[-1].end, abs=0.01)
    with av.open(str(result.path)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == result.packets
    assert {(f.width, f.height) for f in frames} == {(320, 240)}


def test_an_export_joins_reconnects_with_the_same_stream_across_the_gap(
    restarts: tuple[SegmentIndex, list[Up]], tmp_path: pathlib.Path
) -> None:
    index, ups = restarts
    coverage = index.coverage("door", ups[0].started - 10, ups[-1].stopped + 10)
    start, end = coverage.covered[1].start, coverage.covered[2].end
    result = export_range(index, "door", start, end, tmp_path / "b.mp4")
    assert not result.cut_at_run_change
    assert (result.start, result.end) == pytest.approx((start, end), abs=0.01)
    assert result.gaps == [Interval(coverage.covered[1].end, coverage.covered[2].start)]
    gap = result.gaps[0]
    with av.open(str(result.path)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == result.packets
    assert {(f.width, f.height) for f in frames} == {(256, 192)}
    times = [f.time for f in frames]
    # The file keeps wall-clock spacing: the gap is a held picture of its length.
    assert None not in times
    longest = max(float(b) - float(a) for a, b in itertools.pairwise(times))
    assert longest == pytest.approx(gap.end - gap.start + 1 / FPS, abs=0.02)
