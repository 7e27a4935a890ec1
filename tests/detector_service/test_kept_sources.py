"""Sources added at run time come back after a restart, their credentials kept but never shown."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import stat
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, TypeVar

import grpc
import pytest
from google.protobuf.message import Message

from detector_service.server import serve
from detector_service.settings import DetectorSettings
from vigil.bench.rtsp import RtspCamera
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc

if TYPE_CHECKING:  # the async stub type exists only in the .pyi stubs
    Stub = pb_grpc.DetectorServiceAsyncStub

SECRETS = ("hunter2", "s3cret")
M = TypeVar("M", bound=Message)


@contextlib.asynccontextmanager
async def started(settings: DetectorSettings) -> AsyncIterator[Stub]:
    server = await serve(settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield pb_grpc.DetectorServiceStub(channel)
    finally:
        await server.stop(0)


def shown(message: M) -> M:
    """``message`` after checking that no password is in it, as text or on the wire."""
    for secret in SECRETS:
        assert secret not in str(message)
        assert secret.encode() not in message.SerializeToString()
    return message


async def listed(stub: Stub) -> dict[str, pb.Source]:
    response = shown(await stub.ListSources(pb.ListSourcesRequest()))
    return {s.spec.id: s for s in response.sources}


async def add(stub: Stub, spec: pb.SourceSpec) -> pb.Source:
    response = shown(await stub.AddSource(pb.AddSourceRequest(source=spec)))
    return response.source


async def first_state(stub: Stub, source_id: str) -> pb.Source:
    call = stub.Subscribe(pb.SubscribeRequest(source_id=source_id, omit_jpeg=True))
    try:
        async for message in call:
            return shown(message).source
    finally:
        call.cancel()
    raise AssertionError("the subscription ended before its first message")


async def test_runtime_sources_survive_a_restart_masked(
    tmp_path: pathlib.Path, rtsp_camera: RtspCamera, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    settings = DetectorSettings(port=0, backend="none", linger_s=0.2, data_dir=tmp_path / "data")
    host = f"127.0.0.1:{rtsp_camera.port}"
    camera = pb.SourceSpec(
        id="cam",
        kind=pb.SOURCE_KIND_STREAM,
        uri=f"rtsp://admin:hunter2@{host}/cam0",
        record_uri=f"rtsp://admin:s3cret@{host}/cam1",
        display_name="Gate",
    )
    async with started(settings) as stub:
        added = await add(stub, camera)
        assert added.spec.uri == f"rtsp://admin:***@{host}/cam0"
        assert added.spec.record_uri == f"rtsp://admin:***@{host}/cam1"
        lobby = pb.SourceSpec(
            id="lobby",
            kind=pb.SOURCE_KIND_TEST_PATTERN,
            display_name="Lobby",
            mode=pb.SOURCE_MODE_ALWAYS,
        )
        await add(stub, lobby)
        await add(stub, pb.SourceSpec(id="gone", kind=pb.SOURCE_KIND_FILE, uri="/videos/x.mp4"))
        shown(await stub.RemoveSource(pb.RemoveSourceRequest(source_id="gone")))

    store = settings.data_dir / "sources.sqlite3"
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert stat.S_IMODE(settings.data_dir.stat().st_mode) == 0o700
    # Kept as given: the camera must be reopened after the restart.
    assert b"hunter2" in store.read_bytes()

    # The second run has a sources file naming "lobby" too: configuration wins.
    sources_file = tmp_path / "sources.toml"
    sources_file.write_text(
        '[[sources]]\nid = "lobby"\nkind = "test_pattern"\ndisplay_name = "Hall"\n'
    )
    sources_file.chmod(0o600)
    configured = settings.model_copy(update={"sources_file": sources_file})
    async with started(configured) as stub:
        sources = await listed(stub)
        assert sorted(sources) == ["cam", "default", "lobby"]
        cam = sources["cam"]
        assert (cam.spec.uri, cam.spec.record_uri, cam.spec.display_name) == (
            added.spec.uri,
            added.spec.record_uri,
            "Gate",
        )
        assert cam.spec.mode == pb.SOURCE_MODE_ALWAYS
        assert (sources["lobby"].spec.display_name, sources["lobby"].spec.mode) == (
            "Hall",
            pb.SOURCE_MODE_ON_DEMAND,
        )
        # Reopened with the password it was given, with nobody watching.
        async with asyncio.timeout(30):
            while (await listed(stub))["cam"].counters.frames_published == 0:  # noqa: ASYNC110 - polling the service
                await asyncio.sleep(0.05)
        assert (await first_state(stub, "cam")).spec.uri == added.spec.uri
        got = shown(await stub.GetSource(pb.GetSourceRequest(source_id="cam")))
        assert got.source.spec.record_uri == added.spec.record_uri
        shown(await stub.RemoveSource(pb.RemoveSourceRequest(source_id="cam")))

    # Without the file, the kept "lobby" is back as it was added; the removed camera is not.
    async with started(settings) as stub:
        sources = await listed(stub)
        assert sorted(sources) == ["default", "lobby"]
        assert (sources["lobby"].spec.display_name, sources["lobby"].spec.mode) == (
            "Lobby",
            pb.SOURCE_MODE_ALWAYS,
        )
        assert sources["lobby"].state != pb.SOURCE_STATE_IDLE  # always on: started at once
    for secret in SECRETS:
        assert secret not in caplog.text
