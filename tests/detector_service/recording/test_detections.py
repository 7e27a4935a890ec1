"""The detections stored with a recording: a recorded always-on RTSP camera whose still blue
picture the test model sees as a knife, listed by ListDetections through the SDK (both flavours)
and ``vigil recordings detections``; what is stored (detected frames only, one empty entry where
objects go) and retention deleting them with their segments."""

from __future__ import annotations

import concurrent.futures
import json
import pathlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from detector_service.recording import (
    DetectionLog,
    RetentionPolicy,
    Segment,
    SegmentIndex,
    enforce,
)
from detector_service.server import DetectorServer, serve
from detector_service.settings import DetectorSettings
from tests.detector_service.backends.test_onnx import build_model
from tests.vigil.conftest import LoopThread
from vigil.bench.rtsp import RtspCamera
from vigil.cli import main
from vigil.common.v1 import common_pb2
from vigil.core.errors import InvalidInput, NotFound
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc
from vigil.sdk import AsyncDetectorClient, DetectorClient, FrameDetections

pytestmark = pytest.mark.timeout(90)

# Where the test model puts its knife in a 320x240 frame (tests/.../backends/test_onnx.py).
KNIFE = (130.0, 180.0, 170.0, 220.0)
EXPORT_MAX_S = 60.0


@dataclass
class Running:
    address: str
    server: DetectorServer
    since: float  # before the source was added


def listed(client: DetectorClient, start: float, end: float) -> tuple[FrameDetections, ...]:
    return client.recorded_detections("door", start, end).frames


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("d")
    thread = LoopThread()
    settings = DetectorSettings(
        port=0,
        backend="onnx",
        onnx_model_path=build_model(tmp / "tiny.onnx"),
        confidence=0.4,
        weapon_classes=["knife"],
        data_dir=tmp / "data",
        recording_segment_s=1.0,
        export_max_s=EXPORT_MAX_S,
    )
    with RtspCamera(
        ("door",), width=320, height=240, fps=10, keyframe_s=1.0, pattern="blue"
    ) as cam:
        server = thread.run(serve(settings))
        address = f"127.0.0.1:{server.port}"
        since = time.time()
        try:
            with DetectorClient(address) as client:
                client.add_source("door", "stream", cam.url())
                deadline = time.monotonic() + 45
                # A still picture: detected about once a second (the motion gate's refresh).
                while len(listed(client, since, time.time())) < 4:
                    assert time.monotonic() < deadline, "no detections stored"
                    time.sleep(0.2)
            yield Running(address, server, since)
        finally:
            thread.run(server.stop(0))
            thread.close()


def test_a_recorded_cameras_detected_frames_are_stored_and_listed(running: Running) -> None:
    with DetectorClient(running.address) as client:
        frames = listed(client, running.since, time.time())
        counters = client.get_source("door").counters
        assert client.get_source("door").recording
    times = [f.at for f in frames]
    assert times == sorted(times)
    assert all(running.since <= at <= time.time() for at in times)
    for frame in frames:
        assert (frame.width, frame.height) == (320, 240)
        [knife] = frame.detections
        assert knife.class_name == "knife"
        assert knife.is_weapon
        assert knife.track_id is not None
        box = knife.box
        assert (box.x_min, box.y_min, box.x_max, box.y_max) == pytest.approx(KNIFE, abs=2)
    # Only the frames the model ran on: the still picture's other frames (skipped by the motion
    # gate, carrying the same boxes) are not stored again.
    assert counters.frames_skipped > 0
    assert len(frames) <= counters.frames_detected


def test_the_ranges_bounds_are_respected(running: Running) -> None:
    with DetectorClient(running.address) as client:
        frames = listed(client, running.since, time.time())
        middle = frames[len(frames) // 2].at
        later = listed(client, middle, time.time())
        earlier = listed(client, running.since, middle)
    # [start, end): the frame at the start is in, the one at the end is not.
    assert later[0].at == pytest.approx(middle, abs=1e-6)
    assert all(f.at >= middle - 1e-6 for f in later)
    assert all(f.at < middle for f in earlier)
    assert len(earlier) + len(later) >= len(frames)


def test_bad_requests_are_refused(running: Running) -> None:
    now = time.time()
    with DetectorClient(running.address) as client:
        with pytest.raises(NotFound):
            client.recorded_detections("nobody", now - 10, now)
        with pytest.raises(InvalidInput, match="after its start"):
            client.recorded_detections("door", now, now - 10)
        with pytest.raises(InvalidInput, match="export limit"):
            client.recorded_detections("door", now - EXPORT_MAX_S - 10, now)


async def test_the_asyncio_client_and_a_missing_range(running: Running) -> None:
    async with AsyncDetectorClient(running.address) as client:
        found = await client.recorded_detections("door", running.since, time.time())
        assert found.frames
        assert found.frames[0].detections[0].class_name == "knife"
    async with grpc.aio.insecure_channel(running.address) as channel:
        stub = pb_grpc.DetectorServiceStub(channel)
        start = Timestamp(seconds=int(running.since))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ListDetections(
                pb.ListDetectionsRequest(source_id="door", range=pb.TimeRange(start=start))
            )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "start and end" in (refused.value.details() or "")


def test_vigil_recordings_detections(running: Running, capsys: pytest.CaptureFixture[str]) -> None:
    connect = ["--detector", running.address]
    window = ["--start", str(running.since), "--end", str(time.time())]
    assert main(["recordings", "detections", "door", *window, *connect]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["CAPTURED", "FRAME", "OBJECTS"]
    assert "320x240" in out[1]
    assert "knife #" in out[1]
    assert main(["recordings", "detections", "door", *window, "--json", *connect]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["frames"][0]["detections"][0]["class_name"] == "knife"
    assert main(["recordings", "detections", "nobody", *window, *connect]) == 1
    assert "NOT_FOUND" in capsys.readouterr().err


def _knife() -> common_pb2.Detection:
    return common_pb2.Detection(class_name="knife", confidence=0.9, is_weapon=True, track_id=1)


def test_only_frames_with_objects_and_one_empty_entry_after_them_are_stored(
    tmp_path: pathlib.Path,
) -> None:
    index = SegmentIndex(tmp_path / "index.sqlite3")
    with concurrent.futures.ThreadPoolExecutor(1) as jobs:
        log = DetectionLog(index, jobs)
        shown = [[], [_knife()], [_knife()], [], [], [_knife()], []]
        for n, detections in enumerate(shown):
            log.add("door", (100 + n) * 10**9, 320, 240, detections)
        log.add("yard", 100 * 10**9, 640, 360, [])
        frames = log.frames("door", 0, 1000)
    assert [(f.capture_time.seconds, len(f.detections)) for f in frames] == [
        (101, 1), (102, 1), (103, 0), (105, 1), (106, 0),
    ]  # fmt: skip
    assert (frames[0].width, frames[0].height) == (320, 240)
    assert frames[0].detections[0].track_id == 1
    assert log.frames("yard", 0, 1000) == []
    index.close()


def _segment(index: SegmentIndex, root: pathlib.Path, start: float, end: float) -> Segment:
    path = root / f"{start:.0f}.mp4"
    path.write_bytes(b"x" * 100)
    begun = index.begin(Segment("door", 1, start, end, path, 100, "h264", 320, 240, "params"))
    index.finish(begun)
    return begun


def test_retention_deletes_the_detections_with_their_segments(tmp_path: pathlib.Path) -> None:
    index = SegmentIndex(tmp_path / "index.sqlite3")
    # Long expired: [100, 110), [110, 120), a gap, [130, 140) held, a gap, [145, 155).
    for start, end in ((100, 110), (110, 120), (130, 140), (145, 155)):
        _segment(index, tmp_path, start, end)
    index.hold("door", 132, 134, time.time() + 3600, "incident x")
    frame = pb.FrameDetections(detections=[_knife()]).SerializeToString()
    index.add_detections([("door", at, frame) for at in (95, 105, 115, 135, 142, 150)])
    index.add_detections([("yard", 105, frame)])

    report = enforce(index, RetentionPolicy(default_days=1.0))

    assert sorted(s.start for s in report.deleted) == [100, 110, 145]
    assert [s.start for s in index.all_segments("door")] == [130]
    # Those the deleted segments showed went, and those of the gaps before them; the held
    # segment keeps its own, and another source's stay.
    assert len(index.detections("door", 0, 1000)) == 1
    assert pb.FrameDetections.FromString(index.detections("door", 135, 136)[0]).detections
    assert len(index.detections("yard", 0, 1000)) == 1
    index.close()
