"""Recording through the running detector: an always-on camera recorded with nobody watching,
its outage a gap, its coverage, exports, snapshots and errors over gRPC.

One camera (the session's RTSP camera, 320x240, a keyframe a second) is reached through a relay
that takes it off the network for a few seconds; an independent client of the same camera keeps
every packet it sends, to compare the recording with.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import av
import cv2
import grpc
import numpy as np
import pytest
import pytest_asyncio
from google.protobuf.timestamp_pb2 import Timestamp

from detector_service.recording import Segment
from detector_service.server import DetectorServer, serve
from detector_service.settings import DetectorSettings
from tests.detector_service.recording.media import Seen, Watcher, decoded, file_packets
from tests.detector_service.recording.relay import Relay
from vigil.bench.rtsp import RtspCamera
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    Stub = pb_grpc.DetectorServiceAsyncStub

pytestmark = [pytest.mark.timeout(120), pytest.mark.asyncio(loop_scope="module")]

FPS = 15
KEYFRAME_S = 1.0
SEGMENT_S = 2.0


def ts(at: float) -> Timestamp:
    out = Timestamp()
    out.FromNanoseconds(round(at * 1e9))
    return out


def seconds(t: Timestamp) -> float:
    return t.ToNanoseconds() / 1e9


def time_range(start: float, end: float) -> pb.TimeRange:
    return pb.TimeRange(start=ts(start), end=ts(end))


async def export(
    stub: Stub, source: str, start: float, end: float, offset: int = 0, limit: int = 0
) -> tuple[pb.ExportInfo, bytes]:
    request = pb.ExportRecordingRequest(
        source_id=source, range=time_range(start, end), offset=offset, limit=limit
    )
    parts = [m async for m in stub.ExportRecording(request)]
    assert parts[0].HasField("info")
    assert all(p.HasField("chunk") for p in parts[1:])
    return parts[0].info, b"".join(p.chunk for p in parts[1:])


async def get_source(stub: Stub, source_id: str) -> pb.Source:
    return (await stub.GetSource(pb.GetSourceRequest(source_id=source_id))).source


@dataclass
class Scenario:
    server: DetectorServer
    stub: Stub
    added_at: float
    cut_at: float
    restored_at: float
    watched: list[Seen]
    while_recording: pb.Source


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def scenario(
    rtsp_camera: RtspCamera, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Scenario]:
    relay = Relay(("127.0.0.1", rtsp_camera.port))
    watcher = Watcher(rtsp_camera.url("cam1"))
    settings = DetectorSettings(
        port=0,
        backend="none",
        data_dir=tmp_path_factory.mktemp("detector"),
        recording_segment_s=SEGMENT_S,
    )
    server = await serve(settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub: Stub = pb_grpc.DetectorServiceStub(channel)
            added_at = time.time()
            spec = pb.SourceSpec(id="door", kind=pb.SOURCE_KIND_STREAM, uri=relay.url("cam1"))
            await stub.AddSource(pb.AddSourceRequest(source=spec))
            await asyncio.sleep(7)
            while_recording = await get_source(stub, "door")
            cut_at = time.time()
            relay.cut()
            await asyncio.sleep(3)
            relay.restore()
            restored_at = time.time()
            # Back within the capture's backoff (a few seconds), then a few segments.
            await asyncio.sleep(10)
            watched = watcher.stop()
            yield Scenario(server, stub, added_at, cut_at, restored_at, watched, while_recording)
    finally:
        await server.stop(0)
        relay.close()


def closed_segments(scenario: Scenario) -> list[Segment]:
    return scenario.server.recorder.index.all_segments("door")


async def test_an_always_source_records_with_nobody_watching(scenario: Scenario) -> None:
    source = scenario.while_recording
    assert source.recording
    assert source.counters.subscribers == 0
    assert closed_segments(scenario)
    # An on-demand source (the built-in test pattern) is not recorded.
    assert not (await get_source(scenario.stub, "default")).recording


async def test_segments_decode_and_hold_the_cameras_own_packets(scenario: Scenario) -> None:
    segments = closed_segments(scenario)
    watched_nals = [p.nals for p in scenario.watched]
    # Two connections (before and after the outage): each one's segments are a run of what the
    # independent client received, byte for byte.
    for run in ([s for s in segments if s.end <= scenario.cut_at + 1],
                [s for s in segments if s.start >= scenario.restored_at]):  # fmt: skip
        assert run
        packets = [p for seg in run for p in file_packets(str(seg.path))]
        for seg in run:
            with av.open(str(seg.path)) as container:
                frames = list(container.decode(video=0))
            assert len(frames) == len(file_packets(str(seg.path)))
            assert {(f.width, f.height) for f in frames} == {(320, 240)}
            assert file_packets(str(seg.path))[0].key
        nals = [p.nals for p in packets]
        n = len(nals)
        assert any(watched_nals[i : i + n] == nals for i in range(len(watched_nals) - n + 1))


async def test_coverage_is_continuous_and_the_outage_is_a_gap(scenario: Scenario) -> None:
    request = pb.GetCoverageRequest(source_id="door", start=ts(scenario.added_at - 60))
    listed_before = closed_segments(scenario)
    coverage = await scenario.stub.GetCoverage(request)
    assert len(coverage.ranges) == 2
    before, after = coverage.ranges
    # Recording starts within the open's probing of the camera's first keyframe.
    assert scenario.added_at < seconds(before.start) < scenario.added_at + 8
    # The outage: from about the cut (the last GOP is written at the next keyframe, never
    # after the connection died) to the reconnection.
    assert scenario.cut_at - KEYFRAME_S - 0.5 < seconds(before.end) <= scenario.cut_at + 0.5
    assert seconds(after.start) >= scenario.restored_at
    assert seconds(after.start) < scenario.restored_at + 8
    # Still recording: the last range is open-ended.
    assert not after.HasField("end")
    # Consecutive segments of one connection meet within 1 s.
    segments = closed_segments(scenario)
    for a, b in itertools.pairwise(segments):
        if not (a.end <= scenario.cut_at + 1 < b.start):
            assert abs(b.start - a.end) < 1.0
    # Every closed segment's bytes (one more may have closed between the two listings).
    sizes = [sum(seg.path.stat().st_size for seg in listed) for listed in (listed_before, segments)]
    assert 0 < sizes[0] <= coverage.bytes <= sizes[1]
    # A window in the past is clipped to it, and ends where it ends.
    start, end = seconds(before.start) + 1, seconds(before.start) + 2
    window = pb.GetCoverageRequest(source_id="door", start=ts(start), end=ts(end))
    [clipped] = (await scenario.stub.GetCoverage(window)).ranges
    assert (seconds(clipped.start), seconds(clipped.end)) == pytest.approx((start, end), abs=1e-6)


async def test_an_export_has_the_asked_duration_and_plays(scenario: Scenario) -> None:
    segments = [s for s in closed_segments(scenario) if s.start >= scenario.restored_at]
    start, end = segments[0].start + 0.5, segments[-1].end - 0.3
    info, data = await export(scenario.stub, "door", start, end)
    covered = seconds(info.covered.end) - seconds(info.covered.start)
    # From the keyframe at or before the start: at most a GOP longer than asked.
    assert end - start <= covered + 1 / FPS < end - start + KEYFRAME_S + 0.1
    assert start - KEYFRAME_S <= seconds(info.covered.start) <= start
    assert info.content_type == "video/mp4"
    assert list(info.gaps) == []
    assert info.size == len(data)
    frames = decoded(data)
    assert {(f.width, f.height) for f in frames} == {(320, 240)}
    assert len(frames) == pytest.approx(covered * FPS, abs=2)
    # The file's own clock: its last picture shows a frame before the end of what it covers.
    assert frames[0].time == 0
    assert float(frames[-1].time or 0) + 1 / FPS == pytest.approx(covered, abs=0.01)
    # Part of it, by offset and limit, is that slice of the whole (served from the cache).
    made = scenario.server.exports.made
    part_info, part = await export(scenario.stub, "door", start, end, offset=1000, limit=5000)
    assert part == data[1000:6000]
    assert part_info.size == info.size
    _, tail = await export(scenario.stub, "door", start, end, offset=len(data) - 10)
    assert tail == data[-10:]
    # Past the end: the description alone, which says the size.
    past_info, past = await export(scenario.stub, "door", start, end, offset=len(data) + 5)
    assert (past_info.size, past) == (info.size, b"")
    assert scenario.server.exports.made == made


async def test_an_export_across_the_outage_reports_the_gap(scenario: Scenario) -> None:
    coverage = await scenario.stub.GetCoverage(pb.GetCoverageRequest(source_id="door"))
    before, after = coverage.ranges
    info, data = await export(
        scenario.stub, "door", seconds(before.end) - 1.5, seconds(after.start) + 1.5
    )
    [gap] = info.gaps
    assert seconds(gap.start) == pytest.approx(seconds(before.end), abs=0.01)
    assert seconds(gap.end) == pytest.approx(seconds(after.start), abs=0.01)
    assert len(decoded(data)) > 2 * FPS


@pytest.mark.parametrize(
    ("source", "window", "code"),
    [
        ("nobody", (0.0, 10.0), grpc.StatusCode.NOT_FOUND),
        ("door", (-3600.0, -3590.0), grpc.StatusCode.NOT_FOUND),  # nothing recorded then
        ("door", (10.0, 5.0), grpc.StatusCode.INVALID_ARGUMENT),
        ("door", (0.0, 7200.0), grpc.StatusCode.INVALID_ARGUMENT),  # over the export limit
    ],
)
async def test_export_errors_say_what_is_wrong(
    scenario: Scenario, source: str, window: tuple[float, float], code: grpc.StatusCode
) -> None:
    start, end = (scenario.added_at + w for w in window)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await export(scenario.stub, source, start, end)
    assert refused.value.code() == code
    assert refused.value.details()


async def test_an_export_needs_both_ends(scenario: Scenario) -> None:
    request = pb.ExportRecordingRequest(
        source_id="door", range=pb.TimeRange(start=ts(scenario.added_at))
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        [m async for m in scenario.stub.ExportRecording(request)]
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_snapshot_shows_the_recording_at_a_time_or_the_live_picture(
    scenario: Scenario,
) -> None:
    segment = closed_segments(scenario)[1]
    at = segment.start + 0.77
    shot = await scenario.stub.GetSnapshot(pb.GetSnapshotRequest(source_id="door", at=ts(at)))
    image = cv2.imdecode(np.frombuffer(shot.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    assert image.shape == (240, 320, 3)
    assert (shot.width, shot.height) == (320, 240)
    assert at - 1 / FPS - 1e-3 < seconds(shot.at) <= at + 1e-3
    # The picture of that moment: the ball of the test pattern is where it was then.
    with av.open(str(segment.path)) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    k = round((seconds(shot.at) - segment.start) * FPS)
    diffs = [
        float(np.abs(image.astype(int) - frames[i].astype(int)).mean()) for i in (k - 3, k, k + 3)
    ]
    assert diffs[1] < min(diffs[0], diffs[2])

    live = await scenario.stub.GetSnapshot(pb.GetSnapshotRequest(source_id="door"))
    assert (live.width, live.height) == (320, 240)
    assert seconds(live.at) > time.time() - 5
    gap_at = (scenario.cut_at + scenario.restored_at) / 2
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await scenario.stub.GetSnapshot(pb.GetSnapshotRequest(source_id="door", at=ts(gap_at)))
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND


async def test_recordings_are_private(scenario: Scenario) -> None:
    root = scenario.server.recorder.root
    for path in root.rglob("*"):
        mode = path.stat().st_mode & 0o777
        assert mode == (0o700 if path.is_dir() else 0o600), path
