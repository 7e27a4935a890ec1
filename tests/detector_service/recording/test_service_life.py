"""Recording through the detector's life: restarts and a killed service, retention under a disk
cap with an incident's recording held, sources without an encoded stream, main streams."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from detector_service.recording import Segment
from detector_service.server import DetectorServer, serve
from detector_service.settings import DetectorSettings
from tests.detector_service.backends.test_onnx import build_model
from tests.detector_service.recording.media import decoded
from vigil.bench.rtsp import RtspCamera
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    Stub = pb_grpc.DetectorServiceAsyncStub

pytestmark = pytest.mark.timeout(120)

ROOT = pathlib.Path(__file__).resolve().parents[3]


def ts(at: float) -> Timestamp:
    out = Timestamp()
    out.FromNanoseconds(round(at * 1e9))
    return out


def seconds(t: Timestamp) -> float:
    return t.ToNanoseconds() / 1e9


@contextlib.asynccontextmanager
async def started(settings: DetectorSettings) -> AsyncIterator[tuple[DetectorServer, Stub]]:
    server = await serve(settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield server, pb_grpc.DetectorServiceStub(channel)
    finally:
        await server.stop(0)


async def until(condition: Callable[[], bool], limit_s: float = 30) -> None:
    async with asyncio.timeout(limit_s):
        while not condition():  # noqa: ASYNC110 - polling the recording on disk
            await asyncio.sleep(0.1)


async def export(stub: Stub, source: str, start: float, end: float) -> tuple[pb.ExportInfo, bytes]:
    request = pb.ExportRecordingRequest(
        source_id=source, range=pb.TimeRange(start=ts(start), end=ts(end))
    )
    parts = [m async for m in stub.ExportRecording(request)]
    return parts[0].info, b"".join(p.chunk for p in parts[1:])


def segments(server: DetectorServer, source: str) -> list[Segment]:
    return server.recorder.index.all_segments(source)


async def test_a_killed_service_recovers_its_open_segment_and_a_restart_keeps_it(
    rtsp_camera: RtspCamera, tmp_path: pathlib.Path
) -> None:
    sources = tmp_path / "sources.toml"
    sources.write_text(f'[[sources]]\nid = "gate"\nkind = "stream"\nuri = "{rtsp_camera.url()}"\n')
    sources.chmod(0o600)
    data = tmp_path / "data"
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'clients'}",
        "VIGIL_DETECTOR_PORT": "0",
        "VIGIL_DETECTOR_BACKEND": "none",
        "VIGIL_DETECTOR_DATA_DIR": str(data),
        "VIGIL_DETECTOR_SOURCES_FILE": str(sources),
        # One long segment: still open when the service is killed.
        "VIGIL_DETECTOR_RECORDING_SEGMENT_S": "600",
    }
    started_at = time.time()
    service = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "detector_service", env=env
    )
    try:
        # Several fragments (one per keyframe, a second apart) on disk.
        files: list[pathlib.Path] = []
        async with asyncio.timeout(60):
            while not files or files[0].stat().st_size < 20_000:
                await asyncio.sleep(0.2)
                files = list((data / "recordings").rglob("*.mp4"))
    finally:
        service.send_signal(signal.SIGKILL)
        await service.wait()
    killed_at = time.time()

    settings = DetectorSettings(port=0, backend="none", data_dir=data)
    async with started(settings) as (server, stub):
        # Not a source any more, but its recording is there, recovered into the index.
        assert server.recorder.index.unfinished("gate") == []
        [recovered] = segments(server, "gate")
        assert recovered.path == files[0]
        coverage = await stub.GetCoverage(pb.GetCoverageRequest(source_id="gate"))
        [covered] = coverage.ranges
        assert started_at < seconds(covered.start) < seconds(covered.end) < killed_at
        # Up to the last whole fragment: at least the 20 kB seen before the kill.
        assert seconds(covered.end) - seconds(covered.start) > 1.0
        _, data_mp4 = await export(stub, "gate", seconds(covered.start), seconds(covered.end))
        assert len(decoded(data_mp4)) > 15
    # A plain restart keeps it as it is.
    async with started(settings) as (server, stub):
        again = await stub.GetCoverage(pb.GetCoverageRequest(source_id="gate"))
        assert list(again.ranges) == [covered]
        assert segments(server, "gate") == [recovered]


async def test_the_disk_cap_deletes_the_oldest_but_an_incidents_recording_is_held(
    tmp_path: pathlib.Path,
) -> None:
    settings = DetectorSettings(
        port=0,
        backend="onnx",
        onnx_model_path=build_model(tmp_path / "tiny.onnx"),
        confidence=0.4,
        weapon_classes=["knife"],
        data_dir=tmp_path / "data",
        incident_clips=True,
        recording_segment_s=1.0,
        # A few segments of a still picture: the oldest unheld ones go within seconds.
        recording_max_gb=8e-6,
        recording_check_s=0.3,
        incident_recording_pre_s=1.0,
        incident_recording_post_s=1.0,
    )
    # A still blue picture that the test model sees as a knife: an incident opens at once and
    # stays open while the camera runs.
    with RtspCamera(
        ("door",), width=320, height=240, fps=10, keyframe_s=1.0, pattern="blue"
    ) as cam:
        async with started(settings) as (server, stub):
            events = stub.StreamIncidents(pb.StreamIncidentsRequest(source_id="door"))
            pending = asyncio.ensure_future(anext(events.__aiter__()))
            async with asyncio.timeout(5):
                while not server.incidents._subscriptions:  # noqa: ASYNC110 - no event to wait on
                    await asyncio.sleep(0.01)
            spec = pb.SourceSpec(id="door", kind=pb.SOURCE_KIND_STREAM, uri=cam.url())
            await stub.AddSource(pb.AddSourceRequest(source=spec))
            try:
                opened = (await asyncio.wait_for(pending, 30)).incident
            finally:
                events.cancel()
            held = opened.recording
            assert held.HasField("start")
            assert not held.HasField("end")
            opened_at = seconds(opened.opened_at)
            assert seconds(held.start) == pytest.approx(opened_at - 1.0, abs=1e-6)

            def cut_after_the_hold() -> bool:
                # The cap has deleted segments after the held ones: a gap follows them.
                index = server.recorder.index
                after = index.coverage("door", opened_at + 1.0, time.time())
                return bool(after.gaps and after.covered) and (
                    after.gaps[0].start < after.covered[-1].start
                )

            await until(cut_after_the_hold)
            # Everything the hold covers is still there, and exports.
            index = server.recorder.index
            hold = index.coverage("door", seconds(held.start), opened_at + 1.0)
            recorded_from = segments(server, "door")[0].start
            assert hold.gaps == [] or hold.gaps[0].end <= recorded_from + 1e-6
            info, mp4 = await export(stub, "door", opened_at - 0.5, opened_at + 1.0)
            assert seconds(info.covered.start) <= opened_at - 0.5
            assert len(decoded(mp4)) >= 10
            # The recording stays near the cap: what is over it is held (or closed since the
            # last check, a segment at most).
            held_bytes = sum(
                s.bytes for s in index.segments("door", seconds(held.start), opened_at + 1.0)
            )
            newest = max(s.bytes for s in index.all_segments("door"))
            assert index.total_bytes() <= 8_000 + held_bytes + newest
            await stub.RemoveSource(pb.RemoveSourceRequest(source_id="door"))
            [closed] = (await stub.ListIncidents(pb.ListIncidentsRequest())).incidents
    # Closing gave the range its end; the clip is the recording's range, not a separate file.
    assert seconds(closed.recording.end) == pytest.approx(seconds(closed.closed_at) + 1.0, abs=1e-6)
    assert closed.clip_path == ""
    assert not list((tmp_path / "data" / "clips").glob("*.avi"))


async def test_the_test_pattern_in_mode_always_is_encoded_once_and_recorded(
    tmp_path: pathlib.Path,
) -> None:
    settings = DetectorSettings(
        port=0, backend="none", data_dir=tmp_path, recording_segment_s=1.0, linger_s=0.2
    )
    async with started(settings) as (server, stub):
        spec = pb.SourceSpec(
            id="pattern",
            kind=pb.SOURCE_KIND_TEST_PATTERN,
            mode=pb.SOURCE_MODE_ALWAYS,
            width=320,
            height=240,
            max_fps=10,
        )
        await stub.AddSource(pb.AddSourceRequest(source=spec))
        await until(lambda: len(segments(server, "pattern")) >= 2)
        source = (await stub.GetSource(pb.GetSourceRequest(source_id="pattern"))).source
        assert source.recording
        first, second = segments(server, "pattern")[:2]
        assert (first.codec, first.width, first.height) == ("h264", 320, 240)
        assert abs(second.start - first.end) < 1.0
        info, mp4 = await export(stub, "pattern", first.start, second.end)
        frames = decoded(mp4)
        assert {(f.width, f.height) for f in frames} == {(320, 240)}
        # About max_fps: the pictures were encoded at the source's rate.
        covered = seconds(info.covered.end) - seconds(info.covered.start)
        assert len(frames) == pytest.approx(covered * 10, rel=0.3)


async def test_a_main_stream_is_recorded_while_detection_reads_the_substream(
    rtsp_camera: RtspCamera, tmp_path: pathlib.Path
) -> None:
    settings = DetectorSettings(port=0, backend="none", data_dir=tmp_path, recording_segment_s=1.0)
    with RtspCamera(("main",), width=256, height=192, fps=15, keyframe_s=1.0) as main:
        async with started(settings) as (server, stub):
            spec = pb.SourceSpec(
                id="lobby",
                kind=pb.SOURCE_KIND_STREAM,
                uri=rtsp_camera.url("cam0"),
                record_uri=main.url(),
            )
            await stub.AddSource(pb.AddSourceRequest(source=spec))
            await until(lambda: len(segments(server, "lobby")) >= 1)
            assert {(s.width, s.height) for s in segments(server, "lobby")} == {(256, 192)}
            live = await stub.GetSnapshot(pb.GetSnapshotRequest(source_id="lobby"))
            assert (live.width, live.height) == (320, 240)
            source = (await stub.GetSource(pb.GetSourceRequest(source_id="lobby"))).source
            assert source.recording
