"""UpdateSource keeps the new spec across restarts: a run-time source in the store (its password
kept though the client only ever saw it masked), a configured one as an override that lasts while
its configuration stays as it was."""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc
import pytest

from detector_service.server import serve
from detector_service.settings import DetectorSettings
from detector_service.source_store import SourceStore
from detector_service.sources import load_sources_file
from vigil.core.errors import InvalidInput
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc

if TYPE_CHECKING:  # the async stub type exists only in the .pyi stubs
    Stub = pb_grpc.DetectorServiceAsyncStub

DOOR = pb.Zone(
    name="door",
    kind=pb.ZONE_KIND_AREA,
    points=[pb.Point(x=0.1, y=0.1), pb.Point(x=0.5, y=0.1), pb.Point(x=0.5, y=0.9)],
    loiter_s=3.0,
)


@contextlib.asynccontextmanager
async def started(settings: DetectorSettings) -> AsyncIterator[Stub]:
    server = await serve(settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield pb_grpc.DetectorServiceStub(channel)
    finally:
        await server.stop(0)


async def get(stub: Stub, source_id: str) -> pb.Source:
    return (await stub.GetSource(pb.GetSourceRequest(source_id=source_id))).source


async def update(stub: Stub, spec: pb.SourceSpec) -> pb.Source:
    return (await stub.UpdateSource(pb.UpdateSourceRequest(source=spec))).source


async def test_a_runtime_source_keeps_its_update_and_its_password(tmp_path: pathlib.Path) -> None:
    settings = DetectorSettings(port=0, backend="none", data_dir=tmp_path / "data")
    camera = pb.SourceSpec(
        id="gate",
        kind=pb.SOURCE_KIND_STREAM,
        uri="rtsp://admin:hunter2@192.0.2.1/stream",
        mode=pb.SOURCE_MODE_ON_DEMAND,
    )
    async with started(settings) as stub:
        await stub.AddSource(pb.AddSourceRequest(source=camera))
        # As a client does: read the source (masked), change its zones, send it back.
        spec = (await get(stub, "gate")).spec
        assert "hunter2" not in spec.uri
        spec.zones.append(DOOR)
        spec.incident_zones.append("door")
        updated = await update(stub, spec)
        assert list(updated.spec.zones) == [DOOR]
        assert updated.spec.uri == spec.uri

    async with started(settings) as stub:
        source = await get(stub, "gate")
        assert list(source.spec.zones) == [DOOR]
        assert list(source.spec.incident_zones) == ["door"]
    store = SourceStore(settings.data_dir / "sources.sqlite3")
    try:
        (kept,) = store.load()
    finally:
        store.close()
    assert kept.uri == camera.uri


async def test_a_configured_source_keeps_its_update_until_its_configuration_changes(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING")
    sources = tmp_path / "sources.toml"
    sources.write_text('[[sources]]\nid = "lobby"\nkind = "test_pattern"\n')
    sources.chmod(0o600)
    settings = DetectorSettings(
        port=0, backend="none", data_dir=tmp_path / "data", sources_file=sources
    )
    async with started(settings) as stub:
        spec = (await get(stub, "lobby")).spec
        spec.zones.append(DOOR)
        spec.display_name = "Lobby"
        await update(stub, spec)
        # The built-in test pattern is configured too.
        default = (await get(stub, "default")).spec
        default.zones.append(DOOR)
        await update(stub, default)

    async with started(settings) as stub:
        lobby = await get(stub, "lobby")
        assert (lobby.spec.display_name, list(lobby.spec.zones)) == ("Lobby", [DOOR])
        assert list((await get(stub, "default")).spec.zones) == [DOOR]

    # The operator changes the source in the file: the file has the last word.
    sources.write_text('[[sources]]\nid = "lobby"\nkind = "test_pattern"\nmax_fps = 5\n')
    async with started(settings) as stub:
        lobby = await get(stub, "lobby")
        assert (lobby.spec.display_name, list(lobby.spec.zones)) == ("", [])
        assert lobby.spec.max_fps == 5
    assert "then changed in the configuration" in caplog.text
    async with started(settings) as stub:
        assert list((await get(stub, "lobby")).spec.zones) == []
        assert list((await get(stub, "default")).spec.zones) == [DOOR]


async def test_zones_from_the_sources_file(tmp_path: pathlib.Path) -> None:
    sources = tmp_path / "sources.toml"
    sources.write_text(
        '[[sources]]\nid = "lobby"\nkind = "test_pattern"\nincident_zones = ["door"]\n'
        '[[sources.zones]]\nname = "door"\nkind = "area"\nloiter_s = 3.0\n'
        "points = [[0.1, 0.1], [0.5, 0.1], [0.5, 0.9]]\n"
        '[[sources.zones]]\nname = "gate"\nkind = "line"\ndirection = "out"\n'
        'classes = ["person"]\npoints = [[0.5, 0], [0.5, 1]]\n'
    )
    sources.chmod(0o600)
    (lobby,) = load_sources_file(sources)
    gate = pb.Zone(
        name="gate", kind=pb.ZONE_KIND_LINE, points=[pb.Point(x=0.5), pb.Point(x=0.5, y=1)],
        classes=["person"], direction=pb.CROSSING_DIRECTION_OUT,
    )  # fmt: skip
    assert list(lobby.zones) == [DOOR, gate]
    assert list(lobby.incident_zones) == ["door"]

    sources.write_text(
        '[[sources]]\nid = "lobby"\nkind = "test_pattern"\n'
        '[[sources.zones]]\nname = "door"\nkind = "area"\npoints = [[0.1, 0.1], [0.5, 0.1]]\n'
    )
    with pytest.raises(InvalidInput, match="zone 'door': an area needs at least 3 points"):
        load_sources_file(sources)
    sources.write_text(
        '[[sources]]\nid = "lobby"\nkind = "test_pattern"\n'
        '[[sources.zones]]\nname = "door"\ncolour = "red"\n'
    )
    with pytest.raises(InvalidInput, match="a zone is a table of"):
        load_sources_file(sources)
    sources.write_text(
        '[[sources]]\nid = "lobby"\nkind = "test_pattern"\n'
        '[[sources.zones]]\nname = "l"\nkind = "line"\ndirection = "up"\n'
        "points = [[0, 0], [1, 1]]\n"
    )
    with pytest.raises(InvalidInput, match="a line's direction is in or out"):
        load_sources_file(sources)


def test_motion_from_the_sources_file(tmp_path: pathlib.Path) -> None:
    sources = tmp_path / "sources.toml"
    head = '[[sources]]\nid = "lobby"\nkind = "test_pattern"\n[sources.motion]\n'
    sources.write_text(
        f"{head}sensitivity = 0.6\ndetect_every_frame = true\n"
        "masks = [[[0.8, 0.0], [1.0, 0.0], [1.0, 0.1]], [[0, 0.5], [0.2, 0.5], [0.1, 1]]]\n"
    )
    sources.chmod(0o600)
    (lobby,) = load_sources_file(sources)
    clock = pb.Polygon(points=[pb.Point(x=0.8), pb.Point(x=1.0), pb.Point(x=1.0, y=0.1)])
    tree = pb.Polygon(points=[pb.Point(y=0.5), pb.Point(x=0.2, y=0.5), pb.Point(x=0.1, y=1)])
    assert lobby.motion == pb.MotionSettings(
        detect_every_frame=True, sensitivity=0.6, masks=[clock, tree]
    )
    sources.write_text('[[sources]]\nid = "lobby"\nkind = "test_pattern"\n')
    (plain,) = load_sources_file(sources)
    assert not plain.HasField("motion")

    for body, message in [
        ("masks = [[[0.1, 0.1], [0.5, 0.1]]]\n", r"motion\.masks\[0\] needs 3 to 64 points"),
        ("masks = [[[0.1, 0.1], [1.5, 0.1], [0.5, 0.9]]]\n", "points are normalised"),
        ("masks = [[[0.1, 0.1, 0.1]]]\n", "motion: "),
        ("sensitivity = 2\n", r"motion\.sensitivity must be between 0"),
        ("sensitivity = 0.5\ngate = true\n", "motion is a table of"),
    ]:
        sources.write_text(head + body)
        with pytest.raises(InvalidInput, match=message):
            load_sources_file(sources)
