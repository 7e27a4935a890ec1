"""UpdateSource and the recording: a source's mode or stream changed at run time moves its
recording with it."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import Callable

import grpc
import pytest

from detector_service.server import serve
from detector_service.settings import DetectorSettings
from vigil.bench.rtsp import RtspCamera
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.timeout(90)


async def until(condition: Callable[[], bool], limit_s: float = 30) -> None:
    async with asyncio.timeout(limit_s):
        while not condition():  # noqa: ASYNC110 - polling the recording
            await asyncio.sleep(0.1)


async def test_an_update_moves_the_recording(
    rtsp_camera: RtspCamera, tmp_path: pathlib.Path
) -> None:
    settings = DetectorSettings(port=0, backend="none", data_dir=tmp_path, recording_segment_s=1)
    server = await serve(settings)
    recorder = server.recorder
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = pb_grpc.DetectorServiceStub(channel)
            spec = pb.SourceSpec(id="gate", kind=pb.SOURCE_KIND_STREAM, uri=rtsp_camera.url())
            await stub.AddSource(pb.AddSourceRequest(source=spec))
            await until(lambda: recorder.is_recording("gate"))

            # On demand: no longer recorded.
            spec.mode = pb.SOURCE_MODE_ON_DEMAND
            updated = (await stub.UpdateSource(pb.UpdateSourceRequest(source=spec))).source
            assert not recorder.records("gate")
            await until(lambda: not recorder.is_recording("gate"))
            assert not updated.recording

            # Always again, now recording the camera's other mount as its main stream.
            spec.mode = pb.SOURCE_MODE_ALWAYS
            spec.record_uri = rtsp_camera.url("cam1")
            await stub.UpdateSource(pb.UpdateSourceRequest(source=spec))
            await until(lambda: recorder.is_recording("gate"))
            source = (await stub.GetSource(pb.GetSourceRequest(source_id="gate"))).source
            assert source.recording
            before = len(recorder.index.all_segments("gate"))
            await until(lambda: len(recorder.index.all_segments("gate")) > before)
    finally:
        await server.stop(0)
