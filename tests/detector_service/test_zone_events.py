"""Zone events end to end: a real RTSP camera plays a scripted scene of a blue square (a "knife" to
the model of ``moving_objects``) walking into an area, standing there, and walking back out over a
line; the real service tracks it and raises the zone events, on the incident stream (with
include_events) and in its event log, and opens the knife's incident only inside its zone."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncGenerator, Iterator
from typing import TYPE_CHECKING

import cv2
import grpc
import pytest

from detector_service.server import DetectorServer
from detector_service.settings import DetectorSettings
from tests.detector_service import moving_objects as mo
from vigil.bench.rtsp import RtspCamera
from vigil.detector.v1 import detector_service_pb2 as pb

if TYPE_CHECKING:  # the async stub type exists only in the .pyi stubs
    from vigil.detector.v1.detector_service_pb2_grpc import DetectorServiceAsyncStub as Stub

FPS = 15
ENTER, LEAVE = pb.SOURCE_EVENT_KIND_ZONE_ENTER, pb.SOURCE_EVENT_KIND_ZONE_LEAVE
LOITER, CROSS = pb.SOURCE_EVENT_KIND_ZONE_LOITER, pb.SOURCE_EVENT_KIND_LINE_CROSS
IN, OUT = pb.CROSSING_DIRECTION_IN, pb.CROSSING_DIRECTION_OUT


def path() -> list[int]:
    """The square's left edge, frame by frame (6 s, looped): still at 0 for 1 s, walks to 100 in
    1 s, stands there for 2 s, walks back in 1 s, stands at 0 for 1 s. Its feet (the box's bottom
    centre) go from x = 20 (0.06 of the width) to 120 (0.375) and back."""
    still, walk = [0] * FPS, [round(100 * i / FPS) for i in range(FPS)]
    return still + walk + [100] * 2 * FPS + walk[::-1] + still


@pytest.fixture(scope="module")
def scene_camera(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RtspCamera]:
    folder = tmp_path_factory.mktemp("scene")
    for n, x in enumerate(path()):
        assert cv2.imwrite(str(folder / f"{n:05d}.jpg"), mo.frame([(x, 100)]))
    frames = str(folder / "%05d.jpg")
    with RtspCamera(("cam",), width=mo.W, height=mo.H, fps=FPS, keyframe_s=1.0, frames=frames) as c:
        yield c


@pytest.fixture
def detector_settings(tmp_path: pathlib.Path) -> DetectorSettings:
    return DetectorSettings(
        port=0,
        backend="onnx",
        onnx_model_path=mo.build_model(tmp_path / "blue.onnx"),
        confidence=0.4,
        weapon_classes=["knife"],
        track_lost_s=2.0,
        incident_close_after_s=0.5,
        incident_cooldown_s=0.0,
        data_dir=tmp_path / "data",
    )


def area(name: str, x0: float, x1: float, **kw: object) -> pb.Zone:
    corners = [(x0, 0.0), (x1, 0.0), (x1, 1.0), (x0, 1.0)]
    points = [pb.Point(x=x, y=y) for x, y in corners]
    return pb.Zone(name=name, kind=pb.ZONE_KIND_AREA, points=points, **kw)  # type: ignore[arg-type]


# The feet cross x = 0.3 going right: from the line's right (seen walking from A at the top to B
# at the bottom, its right is the picture's left) to its left, which is "out".
GATE = pb.Zone(
    name="gate", kind=pb.ZONE_KIND_LINE, points=[pb.Point(x=0.3, y=0.0), pb.Point(x=0.3, y=1.0)]
)
PAD = area("pad", 0.25, 0.5, loiter_s=1.0)
# The same gate for inbound crossings only, and the pad for knives and for people only.
GATE_IN = pb.Zone(name="gate-in", points=GATE.points, kind=GATE.kind, direction=IN)
KNIVES, PEOPLE = (
    area("knives", 0.25, 0.5, classes=["knife"]),
    area("people", 0.25, 0.5, classes=["person"]),
)


def camera(url: str, *zones: pb.Zone, incident_zones: tuple[str, ...] = ()) -> pb.SourceSpec:
    return pb.SourceSpec(
        id="cam", kind=pb.SOURCE_KIND_STREAM, uri=url, zones=zones, incident_zones=incident_zones
    )


async def follow(stub: Stub, include_events: bool) -> AsyncGenerator[pb.StreamIncidentsResponse]:
    call = stub.StreamIncidents(
        pb.StreamIncidentsRequest(source_id="cam", include_events=include_events)
    )
    try:
        async for message in call:
            yield message
    finally:
        call.cancel()


async def one_cycle(stub: Stub) -> list[pb.SourceEvent]:
    """The zone events of a whole visit of the pad, from its enter to its leave.

    The first visit is skipped: the camera's first seconds may come faster than real time, so
    the square may first be seen already inside.
    """
    events: list[pb.SourceEvent] = []
    left = False
    async with asyncio.timeout(40):
        async for message in follow(stub, include_events=True):
            if message.type != pb.INCIDENT_EVENT_TYPE_SOURCE_EVENT:
                continue
            if events or (left and message.event.kind == ENTER):
                events.append(message.event)
            if message.event.kind == LEAVE:
                if events:
                    return events
                left = True
    raise AssertionError("the stream ended")


async def test_enter_cross_loiter_cross_back_and_leave(
    detector: DetectorServer, detector_stub: Stub, scene_camera: RtspCamera
) -> None:
    cycle = asyncio.create_task(one_cycle(detector_stub))
    await asyncio.sleep(0)  # subscribed before the source starts
    zones = (PAD, GATE, GATE_IN, KNIVES, PEOPLE)
    await detector_stub.AddSource(pb.AddSourceRequest(source=camera(scene_camera.url(), *zones)))
    events = await cycle

    assert [(e.kind, e.zone, e.direction) for e in events if e.zone != "knives"] == [
        (ENTER, "pad", 0),
        (CROSS, "gate", OUT),
        (LOITER, "pad", 0),
        (CROSS, "gate", IN),
        (CROSS, "gate-in", IN),
        (LEAVE, "pad", 0),
    ]
    # Class filters: the knife is seen in the area for knives, not in the one for people.
    assert [e.kind for e in events if e.zone == "knives"] == [ENTER]
    events = [e for e in events if e.zone != "knives"]
    assert len({e.track_id for e in events}) == 1
    assert all(e.class_name == "knife" and e.source_id == "cam" and e.id for e in events)
    enter, loiter = events[0].at.ToNanoseconds(), events[2].at.ToNanoseconds()
    # By capture time: the square stood inside for the pad's second before it loitered.
    assert loiter - enter >= 1_000_000_000
    # Streamed without snapshots (not asked for), stored with them.
    assert not any(e.snapshot_jpeg for e in events)
    assert all(e.has_snapshot for e in events)
    stored = await detector_stub.ListEvents(
        pb.ListEventsRequest(source_id="cam", kinds=[LOITER], include_snapshot=True)
    )
    (loitered,) = [e for e in stored.events if e.id == events[2].id]
    assert loitered.snapshot_jpeg.startswith(b"\xff\xd8")
    assert {e.kind for e in stored.events} == {LOITER}


async def test_the_knife_alerts_only_inside_its_zone_and_events_need_asking(
    detector: DetectorServer, detector_stub: Stub, scene_camera: RtspCamera
) -> None:
    # Both streams from before the source starts; the knife is in view from its first frame.
    with_events, plain = follow(detector_stub, True), follow(detector_stub, False)
    first_plain = asyncio.ensure_future(anext(plain))
    spec = camera(scene_camera.url(), PAD, incident_zones=("pad",))
    await detector_stub.AddSource(pb.AddSourceRequest(source=spec))

    async with asyncio.timeout(40):
        seen = [await anext(with_events)]
        while seen[-1].type != pb.INCIDENT_EVENT_TYPE_OPENED:
            seen.append(await anext(with_events))
        opened = await first_plain
    await with_events.aclose()
    await plain.aclose()

    # Seen for a second outside the pad, the knife opened its incident only once inside it.
    entered = next(m.event for m in seen if m.event.kind == ENTER)
    assert seen[-1].incident.opened_at.ToNanoseconds() >= entered.at.ToNanoseconds()
    assert list(seen[-1].incident.zones) == ["pad"]
    # Without include_events the first message is that incident: the enter was not sent.
    assert opened.type == pb.INCIDENT_EVENT_TYPE_OPENED
    assert opened.incident.id == seen[-1].incident.id


async def test_zones_change_live_and_the_capture_runs_on(
    detector: DetectorServer, detector_stub: Stub, scene_camera: RtspCamera
) -> None:
    await detector_stub.AddSource(pb.AddSourceRequest(source=camera(scene_camera.url())))
    before = await live(detector_stub)

    spec = camera(scene_camera.url(), area("left", 0.0, 0.2))
    updated = (await detector_stub.UpdateSource(pb.UpdateSourceRequest(source=spec))).source
    events = await one_kind(detector_stub, "left")

    assert [z.name for z in updated.spec.zones] == ["left"]
    assert events.zone == "left"
    after = (await detector_stub.GetSource(pb.GetSourceRequest(source_id="cam"))).source
    # Zones apply to the running capture: it did not restart.
    assert after.state == pb.SOURCE_STATE_LIVE
    assert after.state_since == before.state_since
    assert after.counters.frames_published > before.counters.frames_published

    # A stream setting does restart it.
    spec.max_fps = 10
    await detector_stub.UpdateSource(pb.UpdateSourceRequest(source=spec))
    restarted = await live(detector_stub)
    assert restarted.state_since.ToNanoseconds() > after.state_since.ToNanoseconds()


async def live(stub: Stub) -> pb.Source:
    async with asyncio.timeout(30):
        while True:
            source = (await stub.GetSource(pb.GetSourceRequest(source_id="cam"))).source
            if source.state == pb.SOURCE_STATE_LIVE:
                return source
            await asyncio.sleep(0.05)


async def one_kind(stub: Stub, zone: str) -> pb.SourceEvent:
    async with asyncio.timeout(30):
        async for message in follow(stub, include_events=True):
            if message.event.zone == zone:
                return message.event
    raise AssertionError("the stream ended")


async def test_update_source_is_refused_clearly(
    detector: DetectorServer, detector_stub: Stub
) -> None:
    pattern = pb.SOURCE_KIND_TEST_PATTERN
    cases = [
        (pb.SourceSpec(id="nope", kind=pattern), grpc.StatusCode.NOT_FOUND, "no source 'nope'"),
        (
            pb.SourceSpec(id="default", kind=pb.SOURCE_KIND_WEBCAM),
            grpc.StatusCode.INVALID_ARGUMENT,
            "kind cannot change",
        ),
        (
            pb.SourceSpec(id="default", kind=pattern, zones=[area("a", 0, 2)]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "zone 'a': point (2, 0) is off the picture",
        ),
        (
            pb.SourceSpec(id="default", kind=pattern, incident_zones=["vault"]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "incident_zones names 'vault'",
        ),
    ]
    for spec, code, message in cases:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await detector_stub.UpdateSource(pb.UpdateSourceRequest(source=spec))
        assert (raised.value.code(), message in str(raised.value.details())) == (code, True)
