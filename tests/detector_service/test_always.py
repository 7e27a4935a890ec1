"""Always-on sources: captured and analysed with nobody watching, so incidents open unwatched."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import grpc
import pytest

from detector_service.server import DetectorServer, serve
from detector_service.settings import DetectorSettings
from detector_service.sources import load_sources_file, mode_of, validate
from tests.detector_service.backends.test_onnx import build_model
from vigil.bench.rtsp import RtspCamera
from vigil.core.errors import InvalidInput
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc

if TYPE_CHECKING:  # the async stub type exists only in the .pyi stubs
    Stub = pb_grpc.DetectorServiceAsyncStub


async def get(stub: Stub, source_id: str) -> pb.Source:
    return (await stub.GetSource(pb.GetSourceRequest(source_id=source_id))).source


async def until(stub: Stub, source_id: str, condition: Callable[[pb.Source], bool]) -> pb.Source:
    async with asyncio.timeout(30):
        while not condition(source := await get(stub, source_id)):  # noqa: ASYNC110 - polling the service
            await asyncio.sleep(0.05)
    return source


async def add(stub: Stub, spec: pb.SourceSpec) -> pb.Source:
    return (await stub.AddSource(pb.AddSourceRequest(source=spec))).source


@pytest.mark.parametrize(
    ("kind", "mode"),
    [
        (pb.SOURCE_KIND_WEBCAM, pb.SOURCE_MODE_ALWAYS),
        (pb.SOURCE_KIND_STREAM, pb.SOURCE_MODE_ALWAYS),
        (pb.SOURCE_KIND_FILE, pb.SOURCE_MODE_ON_DEMAND),
        (pb.SOURCE_KIND_TEST_PATTERN, pb.SOURCE_MODE_ON_DEMAND),
    ],
)
def test_cameras_are_always_on_unless_told(
    kind: pb.SourceKind.ValueType, mode: pb.SourceMode.ValueType
) -> None:
    assert mode_of(pb.SourceSpec(kind=kind)) == mode
    for declared in (pb.SOURCE_MODE_ON_DEMAND, pb.SOURCE_MODE_ALWAYS):
        assert mode_of(pb.SourceSpec(kind=kind, mode=declared)) == declared


async def test_the_mode_in_effect_is_in_every_answer(
    detector_stub: Stub, rtsp_camera: RtspCamera
) -> None:
    camera = await add(
        detector_stub, pb.SourceSpec(id="cam", kind=pb.SOURCE_KIND_STREAM, uri=rtsp_camera.url())
    )
    # Started at once, not on a first viewer.
    assert (camera.spec.mode, camera.state) == (pb.SOURCE_MODE_ALWAYS, pb.SOURCE_STATE_STARTING)
    played = await add(
        detector_stub, pb.SourceSpec(id="clip", kind=pb.SOURCE_KIND_FILE, uri="/v.mp4")
    )
    assert (played.spec.mode, played.state) == (pb.SOURCE_MODE_ON_DEMAND, pb.SOURCE_STATE_IDLE)
    listed = await detector_stub.ListSources(pb.ListSourcesRequest())
    assert {s.spec.id: s.spec.mode for s in listed.sources} == {
        "cam": pb.SOURCE_MODE_ALWAYS,
        "clip": pb.SOURCE_MODE_ON_DEMAND,
        "default": pb.SOURCE_MODE_ON_DEMAND,
    }
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await add(detector_stub, pb.SourceSpec(id="x", kind=pb.SOURCE_KIND_FILE, uri="/v", mode=7))  # type: ignore[arg-type]
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "mode must be on_demand or always" in (refused.value.details() or "")


async def test_an_always_on_camera_captures_with_no_viewer_and_outlives_its_viewers(
    detector_stub: Stub, rtsp_camera: RtspCamera
) -> None:
    camera = pb.SourceSpec(id="cam", kind=pb.SOURCE_KIND_STREAM, uri=rtsp_camera.url())
    await add(detector_stub, camera)
    first = await until(detector_stub, "cam", lambda s: s.counters.frames_published >= 5)
    assert first.state == pb.SOURCE_STATE_LIVE
    assert first.counters.subscribers == 0
    await until(
        detector_stub,
        "cam",
        lambda s: s.counters.frames_published > first.counters.frames_published,
    )

    # A viewer comes and goes, with an on-demand source watched alongside as the yardstick.
    shown = pb.SourceSpec(id="shown", kind=pb.SOURCE_KIND_TEST_PATTERN, max_fps=5)
    await add(detector_stub, shown)
    calls = [detector_stub.Subscribe(pb.SubscribeRequest(source_id=i)) for i in ("cam", "shown")]
    for call in calls:
        async for message in call:
            if message.HasField("frame"):
                break
        call.cancel()
    # The on-demand source stops after the linger ...
    await until(detector_stub, "shown", lambda s: s.state == pb.SOURCE_STATE_STOPPED)
    # ... while the always-on camera stays live and goes on counting frames.
    after = await get(detector_stub, "cam")
    assert after.state == pb.SOURCE_STATE_LIVE
    assert after.counters.subscribers == 0
    await until(
        detector_stub,
        "cam",
        lambda s: s.counters.frames_published > after.counters.frames_published,
    )


@contextlib.asynccontextmanager
async def started(settings: DetectorSettings) -> AsyncIterator[tuple[DetectorServer, Stub]]:
    server = await serve(settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield server, pb_grpc.DetectorServiceStub(channel)
    finally:
        await server.stop(0)


async def test_an_always_on_camera_raises_an_incident_with_nobody_watching(
    tmp_path: pathlib.Path,
) -> None:
    settings = DetectorSettings(
        port=0,
        backend="onnx",
        onnx_model_path=build_model(tmp_path / "tiny.onnx"),
        confidence=0.4,
        weapon_classes=["knife"],
        data_dir=tmp_path / "data",
    )
    # A real RTSP camera whose still blue picture the test model sees as a knife.
    with RtspCamera(
        ("door",), width=320, height=240, fps=10, keyframe_s=1.0, pattern="blue"
    ) as cam:
        async with started(settings) as (server, stub):
            events = stub.StreamIncidents(pb.StreamIncidentsRequest(source_id="door"))
            pending = asyncio.ensure_future(anext(events.__aiter__()))
            async with asyncio.timeout(5):
                while not server.incidents._subscriptions:  # noqa: ASYNC110 - no event to wait on
                    await asyncio.sleep(0.01)
            # No mode given: a camera is always on.
            await add(stub, pb.SourceSpec(id="door", kind=pb.SOURCE_KIND_STREAM, uri=cam.url()))
            try:
                opened = await asyncio.wait_for(pending, 30)
            finally:
                events.cancel()
            assert opened.type == pb.INCIDENT_EVENT_TYPE_OPENED
            assert (opened.incident.source_id, opened.incident.class_name) == ("door", "knife")
            source = await get(stub, "door")
            # Nobody ever subscribed to its frames.
            assert source.counters.subscribers == 0
            assert source.counters.frames_published >= settings.incident_min_frames
            listed = await stub.ListIncidents(pb.ListIncidentsRequest(source_id="door"))
            assert [i.id for i in listed.incidents] == [opened.incident.id]


def test_the_sources_file_names_modes_and_main_streams(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "sources.toml"
    path.write_text(
        '[[sources]]\nid = "gate"\nkind = "stream"\nuri = "rtsp://cam/sub"\n'
        'record_uri = "rtsp://u:p@cam/main"\nmode = "on_demand"\n'
        '[[sources]]\nid = "lobby"\nkind = "test_pattern"\nmode = "always"\n'
        '[[sources]]\nid = "door"\nkind = "webcam"\nuri = "0"\n'
    )
    path.chmod(0o600)
    gate, lobby, door = load_sources_file(path)
    assert (gate.mode, gate.record_uri) == (pb.SOURCE_MODE_ON_DEMAND, "rtsp://u:p@cam/main")
    assert lobby.mode == pb.SOURCE_MODE_ALWAYS
    assert door.mode == pb.SOURCE_MODE_UNSPECIFIED  # the kind's default, resolved when added
    path.write_text('[[sources]]\nid = "x"\nkind = "test_pattern"\nmode = "sometimes"\n')
    with pytest.raises(InvalidInput, match="mode must be one of"):
        load_sources_file(path)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            pb.SourceSpec(id="x", kind=pb.SOURCE_KIND_FILE, uri="/v", record_uri="rtsp://c/main"),
            "record_uri is for streams only",
        ),
        (
            pb.SourceSpec(id="x", kind=pb.SOURCE_KIND_STREAM, uri="rtsp://c/s", record_uri="/main"),
            "record_uri must start with rtsp://",
        ),
        (
            pb.SourceSpec(
                id="x", kind=pb.SOURCE_KIND_STREAM, uri="rtsp://c/s", record_uri="rtsp://a:p#w@c/m"
            ),
            "record_uri's user:password part could not be read",
        ),
    ],
)
def test_bad_main_streams_are_refused(spec: pb.SourceSpec, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        validate(spec)
