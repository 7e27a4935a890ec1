"""A disk that stalls longer than the recording's queue holds: the recording is cut, the loss is
a counted gap, and recording resumes on a keyframe."""

from __future__ import annotations

import asyncio
import pathlib
import sqlite3
import time

import grpc
import pytest

from detector_service.recording import Segment
from detector_service.server import serve
from detector_service.settings import DetectorSettings
from tests.detector_service.recording.media import file_packets
from vigil.bench.rtsp import RtspCamera
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.timeout(60)


async def test_a_stalled_disk_cuts_the_recording_into_a_counted_gap(
    rtsp_camera: RtspCamera, tmp_path: pathlib.Path
) -> None:
    settings = DetectorSettings(
        port=0,
        backend="none",
        data_dir=tmp_path,
        recording_segment_s=1.0,
        # About two seconds of the session camera (320x240, ~10 kB/s).
        recording_buffer_mb=0.02,
    )
    server = await serve(settings)
    index_path = server.recorder.root / "index.sqlite3"
    # Another writer holds the index: the recording thread waits on its first segment, as it
    # would on a disk that stopped answering (SQLite waits up to 5 s for the lock).
    stall = sqlite3.connect(index_path, isolation_level=None)
    stall.execute("BEGIN IMMEDIATE")
    stalled_at = time.time()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = pb_grpc.DetectorServiceStub(channel)
            spec = pb.SourceSpec(id="door", kind=pb.SOURCE_KIND_STREAM, uri=rtsp_camera.url())
            await stub.AddSource(pb.AddSourceRequest(source=spec))
            async with asyncio.timeout(10):
                while server.recorder.losses("door")[0] == 0:  # noqa: ASYNC110 - polling
                    await asyncio.sleep(0.05)
            await asyncio.sleep(1.5)
            stall.execute("ROLLBACK")
            released_at = time.time()
            segments: list[Segment] = []
            async with asyncio.timeout(20):
                while len(segments) < 3:
                    await asyncio.sleep(0.1)
                    segments = server.recorder.index.all_segments("door")
            coverage = server.recorder.index.coverage("door", stalled_at - 5, segments[-1].end)
            cuts, dropped = server.recorder.losses("door")
            source = (await stub.GetSource(pb.GetSourceRequest(source_id="door"))).source
    finally:
        stall.close()
        await server.stop(0)
    assert cuts >= 1
    assert dropped > 0
    # What was queued before the queue filled is recorded; then a gap (what did not fit), then
    # the recording resumed at a keyframe once the disk answered again.
    assert len(coverage.covered) >= 2
    first_gap = next(g for g in coverage.gaps if g.start > coverage.covered[0].start)
    # Placed by when the packets arrived, not when the stalled writer got to them: the gap
    # starts before the disk answered again and ends after it, at the first keyframe that fit.
    assert first_gap.start < released_at - 0.5
    assert released_at - 0.5 < first_gap.end <= released_at + 5
    for seg in segments:
        assert file_packets(str(seg.path))[0].key
    assert source.recording
