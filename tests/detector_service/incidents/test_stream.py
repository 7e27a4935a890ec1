"""Incident events reaching subscribers on the event loop from a processing thread."""

from __future__ import annotations

import asyncio

from tests.detector_service.incidents.conftest import Trackers
from tests.detector_service.incidents.helpers import Camera, det, drain, frame_jpeg, kinds
from vigil.detector.v1 import detector_service_pb2 as pb


async def test_subscriber_gets_opened_then_closed_from_another_thread(trackers: Trackers) -> None:
    tracker = trackers.make(close_after_s=1.0)
    sub = tracker.subscribe()

    def processing_thread() -> None:
        cam = Camera(tracker)
        cam.frames(3, det("gun", 0.9))
        cam.frames(10)

    await asyncio.to_thread(processing_thread)
    opened = await asyncio.wait_for(anext(sub), 5)
    closed = await asyncio.wait_for(anext(sub), 5)
    assert opened.type == pb.INCIDENT_EVENT_TYPE_OPENED
    assert closed.type == pb.INCIDENT_EVENT_TYPE_CLOSED
    assert opened.incident.id == closed.incident.id
    assert opened.incident.snapshot_jpeg == closed.incident.snapshot_jpeg == frame_jpeg(2)
    assert not opened.incident.HasField("closed_at")
    assert closed.incident.HasField("closed_at")
    assert sub.dropped == 0


async def test_source_filter_and_snapshot_choice(trackers: Trackers) -> None:
    tracker = trackers.make()
    only_a = tracker.subscribe("cam-a")
    everything = tracker.subscribe(include_snapshot=False)
    a, b = Camera(tracker, "cam-a"), Camera(tracker, "cam-b")
    b.frames(3, det("knife"))
    a.frames(3, det("knife"))

    (event,) = await drain(only_a)
    assert event.incident.source_id == "cam-a"
    assert event.incident.snapshot_jpeg
    events = await drain(everything)
    assert [e.incident.source_id for e in events] == ["cam-b", "cam-a"]
    assert all(e.incident.snapshot_jpeg == b"" for e in events)
    # Stripping for one subscriber leaves the event the others got intact.
    assert event.incident.snapshot_jpeg == frame_jpeg(2)


async def test_a_stuck_subscriber_loses_and_counts_not_the_others(trackers: Trackers) -> None:
    tracker = trackers.make(min_frames=1, window=1, subscriber_queue=2)
    stuck, reader = tracker.subscribe(), tracker.subscribe()
    cam = Camera(tracker)
    read = []
    for name in ("knife", "gun", "pistol"):
        cam.frame(det(name))
        read += await drain(reader)
    assert [e.incident.class_name for e in read] == ["knife", "gun", "pistol"]
    assert reader.dropped == 0
    # The stuck one kept the oldest two and counted the third.
    assert [e.incident.class_name for e in await drain(stuck)] == ["knife", "gun"]
    assert stuck.dropped == 1


async def test_closed_subscription_ends_and_receives_nothing(trackers: Trackers) -> None:
    tracker = trackers.make(min_frames=1, window=1)
    sub = tracker.subscribe()
    sub.close()
    Camera(tracker).frame(det("knife"))
    assert await drain(sub) == []
    assert [e async for e in sub] == []


async def test_tracker_close_closes_open_incidents_and_ends_streams(trackers: Trackers) -> None:
    tracker = trackers.make(close_after_s=30.0)
    sub = tracker.subscribe()
    cam = Camera(tracker)
    cam.frames(3, det("knife"))
    last = cam.frame()
    incident_id = (await drain(sub))[0].incident.id

    await asyncio.to_thread(tracker.close)
    events = [e async for e in sub]  # ends by itself
    assert kinds(events) == ["CLOSED"]
    assert events[0].incident.id == incident_id
    assert events[0].incident.closed_at.ToNanoseconds() == last

    # Observing after close is a no-op, and a late subscriber is ended at once.
    cam.frames(3, det("knife"))
    assert [e async for e in tracker.subscribe()] == []
