"""Incidents end to end: a file source, the ONNX backend on a test-built model, gRPC clients.

The model (see ``backends/test_onnx.py``) scores "knife" with the blue mean of the frame and
"person" with the red one, so a video that is red, then blue, then red again scripts a knife's
presence and absence through the real capture → batcher → model → tracker → store path.
"""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import cv2
import grpc
import numpy as np
import pytest

from detector_service.server import DetectorServer
from detector_service.settings import DetectorSettings
from tests.detector_service.backends.test_onnx import build_model
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc

if TYPE_CHECKING:  # the async stub type exists only in the .pyi stubs
    Stub = pb_grpc.DetectorServiceAsyncStub

FPS = 20
W, H = 320, 240
RED, BLUE = (0, 0, 255), (255, 0, 0)  # BGR
# 0.5 s red, 1 s blue (the knife), 2 s red: the knife is gone long before the file ends.
SCRIPT = [RED] * 10 + [BLUE] * 20 + [RED] * 40
# The knife box (30, 48, 8, 8) of the 64x64 input, in a 320x240 frame (scale 0.2, 8 rows of
# padding above): centre (150, 200), 40x40.
KNIFE_BOX = (130.0, 180.0, 170.0, 220.0)
# Blue fills 3/4 of the letterboxed input, grey 114 the rest: 0.75 + 0.25 * 114 / 255.
KNIFE_SCORE = 0.75 + 0.25 * 114 / 255


@pytest.fixture
def detector_settings(tmp_path: pathlib.Path) -> DetectorSettings:
    return DetectorSettings(
        port=0,
        backend="onnx",
        onnx_model_path=build_model(tmp_path / "tiny.onnx"),
        confidence=0.4,
        weapon_classes=["knife"],
        incident_min_frames=3,
        incident_window=5,
        incident_close_after_s=0.5,
        incident_cooldown_s=30.0,
        data_dir=tmp_path / "data",
        linger_s=0.2,
    )


def write_video(path: pathlib.Path) -> pathlib.Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), FPS, (W, H))
    assert writer.isOpened()
    for bgr in SCRIPT:
        writer.write(np.full((H, W, 3), bgr, np.uint8))
    writer.release()
    return path


async def collect_frames(stub: Stub, source_id: str, into: list[pb.Frame]) -> None:
    async for message in stub.Subscribe(pb.SubscribeRequest(source_id=source_id)):
        if message.HasField("frame"):
            into.append(message.frame)


async def wait_for_subscription(server: DetectorServer, count: int) -> None:
    # StreamIncidents only follows events from the moment the service has run the handler.
    async with asyncio.timeout(5):
        while len(server.incidents._subscriptions) < count:  # noqa: ASYNC110 - polling: no event to wait on
            await asyncio.sleep(0.01)


def red_pixels(jpeg: bytes) -> int:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    assert image.shape == (H, W, 3)
    b, g, r = (image[..., i].astype(int) for i in range(3))
    return int(((r > 150) & (b < 100) & (g < 100)).sum())


async def test_knife_incident_opens_streams_closes_and_is_listed(
    detector: DetectorServer, detector_stub: Stub, tmp_path: pathlib.Path
) -> None:
    video = write_video(tmp_path / "knife.avi")
    with_snapshot = detector_stub.StreamIncidents(pb.StreamIncidentsRequest(include_snapshot=True))
    without_snapshot = detector_stub.StreamIncidents(
        pb.StreamIncidentsRequest(source_id="door", include_snapshot=False)
    )
    other_source = detector_stub.StreamIncidents(pb.StreamIncidentsRequest(source_id="elsewhere"))
    events: AsyncIterator[pb.StreamIncidentsResponse] = with_snapshot.__aiter__()
    plain_events: AsyncIterator[pb.StreamIncidentsResponse] = without_snapshot.__aiter__()
    other_events: AsyncIterator[pb.StreamIncidentsResponse] = other_source.__aiter__()
    # Start the calls, then make sure the service follows them before any frame flows.
    pending = [asyncio.ensure_future(anext(it)) for it in (events, plain_events, other_events)]
    await wait_for_subscription(detector, 3)

    spec = pb.SourceSpec(id="door", kind=pb.SOURCE_KIND_FILE, uri=str(video), max_fps=FPS)
    await detector_stub.AddSource(pb.AddSourceRequest(source=spec))
    frames: list[pb.Frame] = []
    viewer = asyncio.create_task(collect_frames(detector_stub, "door", frames))
    try:
        opened = await asyncio.wait_for(pending[0], 10)
        plain_opened = await asyncio.wait_for(pending[1], 5)
        closed = await asyncio.wait_for(anext(events), 10)
        # Closed by the knife's absence while the file still plays, not by the source's end.
        source = (await detector_stub.GetSource(pb.GetSourceRequest(source_id="door"))).source
        assert source.state == pb.SOURCE_STATE_LIVE
        plain_closed = await asyncio.wait_for(anext(plain_events), 5)
        # A subscriber of another source heard nothing.
        assert not pending[2].done()
        # Frames keep coming after the close; let the viewer see a few of the red tail.
        await asyncio.sleep(0.3)
    finally:
        viewer.cancel()
        pending[2].cancel()
        for call in (with_snapshot, without_snapshot, other_source):
            call.cancel()

    assert opened.type == pb.INCIDENT_EVENT_TYPE_OPENED
    assert closed.type == pb.INCIDENT_EVENT_TYPE_CLOSED
    incident = opened.incident
    assert closed.incident.id == incident.id
    assert (incident.source_id, incident.class_name) == ("door", "knife")
    assert not incident.HasField("closed_at")
    assert closed.incident.HasField("closed_at")
    opened_ns = incident.opened_at.ToNanoseconds()
    closed_ns = closed.incident.closed_at.ToNanoseconds()
    assert 0.4e9 <= closed_ns - opened_ns <= 3e9  # most of the 1 s of blue, plus 0.5 s
    assert incident.peak_confidence == pytest.approx(KNIFE_SCORE, abs=0.05)
    (weapon,) = incident.detections
    assert weapon.is_weapon
    assert weapon.class_name == "knife"
    box = (weapon.box.x_min, weapon.box.y_min, weapon.box.x_max, weapon.box.y_max)
    assert box == pytest.approx(KNIFE_BOX, abs=1.0)
    # The snapshot is the annotated opening frame: blue with the knife's box drawn in red.
    assert incident.snapshot_jpeg
    assert red_pixels(incident.snapshot_jpeg) > 100
    assert closed.incident.snapshot_jpeg == incident.snapshot_jpeg
    # The same events without the snapshot for the subscriber that did not ask for it.
    assert [plain_opened.type, plain_closed.type] == [
        pb.INCIDENT_EVENT_TYPE_OPENED,
        pb.INCIDENT_EVENT_TYPE_CLOSED,
    ]
    assert plain_opened.incident.id == incident.id
    assert plain_opened.incident.snapshot_jpeg == b""
    assert plain_closed.incident.snapshot_jpeg == b""

    # Frames published during the incident carry the knife as a weapon; the red ones a person.
    knife_frames = [f for f in frames if any(d.class_name == "knife" for d in f.detections)]
    assert len(knife_frames) >= 3
    for frame in frames:
        assert not frame.HasField("detection_error")
        for d in frame.detections:
            assert d.is_weapon == (d.class_name == "knife"), d
    knife_ns = [f.capture_time.ToNanoseconds() for f in knife_frames]
    assert min(knife_ns) <= opened_ns <= max(knife_ns)
    assert max(knife_ns) < closed_ns
    assert any(f.capture_time.ToNanoseconds() > closed_ns for f in frames)
    peak_seen = max(d.confidence for f in knife_frames for d in f.detections if d.is_weapon)
    assert closed.incident.peak_confidence >= peak_seen - 1e-6

    # The history holds the closed incident, with its peak confidence and snapshot.
    listed = await detector_stub.ListIncidents(
        pb.ListIncidentsRequest(source_id="door", include_snapshot=True)
    )
    (stored,) = listed.incidents
    assert listed.next_page_token == ""
    assert stored.id == incident.id
    assert stored.peak_confidence == pytest.approx(closed.incident.peak_confidence)
    assert stored.closed_at.ToNanoseconds() == closed_ns
    assert stored.snapshot_jpeg == incident.snapshot_jpeg
    bare = await detector_stub.ListIncidents(pb.ListIncidentsRequest(include_snapshot=False))
    assert [i.id for i in bare.incidents] == [incident.id]
    assert bare.incidents[0].snapshot_jpeg == b""
    assert not (await detector_stub.ListIncidents(pb.ListIncidentsRequest(source_id="x"))).incidents

    for token in ("not-a-token", "aW5jaWRlbnRzOm5vdDpudW1iZXJz"):  # "incidents:not:numbers"
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await detector_stub.ListIncidents(pb.ListIncidentsRequest(page_token=token))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "page token" in (info.value.details() or "")
