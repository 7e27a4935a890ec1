"""Opening, updating, closing and cooling down incidents from scripted detection sequences."""

from __future__ import annotations

import pathlib

import pytest

from detector_service.incidents.config import IncidentConfig
from tests.detector_service.incidents.conftest import Trackers
from tests.detector_service.incidents.helpers import Camera, det, drain, frame_jpeg, kinds
from vigil.detector.v1 import detector_service_pb2 as pb

KNIFE = det("knife", 0.6)


async def test_opens_exactly_on_the_nth_sighting_of_the_last_m_frames(trackers: Trackers) -> None:
    tracker = trackers.make(min_frames=3, window=5)
    sub = tracker.subscribe()
    cam = Camera(tracker)
    cam.frame(KNIFE)
    cam.frame()
    cam.frame(KNIFE)
    cam.frame(det("person", 0.9, weapon=False))
    assert await drain(sub) == []

    person, gun_like = det("person", 0.9, weapon=False), det("knife", 0.7)
    at = cam.frame(person, gun_like)  # third knife within five frames

    (event,) = await drain(sub)
    assert event.type == pb.INCIDENT_EVENT_TYPE_OPENED
    incident = event.incident
    assert len(incident.id) == 32
    assert (incident.source_id, incident.class_name) == ("cam", "knife")
    assert incident.opened_at.ToNanoseconds() == at
    assert not incident.HasField("closed_at")
    assert incident.snapshot_jpeg == frame_jpeg(4)
    assert list(incident.detections) == [gun_like]  # the frame's weapons only
    assert incident.peak_confidence == pytest.approx(0.7)


async def test_sightings_spread_wider_than_the_window_never_open(trackers: Trackers) -> None:
    tracker = trackers.make(min_frames=3, window=5)
    sub = tracker.subscribe()
    cam = Camera(tracker)
    for _ in range(20):
        cam.frame(KNIFE)
        cam.frames(2)  # one sighting in three frames: at most two in any five
    assert await drain(sub) == []


async def test_no_second_opened_while_open_and_peak_follows(trackers: Trackers) -> None:
    tracker = trackers.make(min_frames=3, window=5, close_after_s=1.0)
    sub = tracker.subscribe()
    cam = Camera(tracker)
    cam.frames(3, KNIFE)
    for i in range(50):
        cam.frame(det("knife", 0.5 + (0.4 if i == 20 else 0.0)))
    events = await drain(sub)
    assert kinds(events) == ["OPENED"]

    cam.frames(10)
    (closed,) = await drain(sub)
    assert closed.type == pb.INCIDENT_EVENT_TYPE_CLOSED
    assert closed.incident.id == events[0].incident.id
    assert closed.incident.peak_confidence == pytest.approx(0.9)


async def test_closes_once_absent_for_close_after(trackers: Trackers) -> None:
    tracker = trackers.make(close_after_s=1.0, cooldown_s=0)
    sub = tracker.subscribe()
    cam = Camera(tracker)
    cam.frames(3, KNIFE)
    # A flicker shorter than close_after_s keeps it open.
    cam.frames(9)
    last_seen = cam.frame(KNIFE)
    absent = cam.frames(9)
    assert kinds(await drain(sub)) == ["OPENED"]
    assert absent[-1] - last_seen == 900_000_000

    cam.frame()  # exactly 1 s after the last sighting
    (closed,) = await drain(sub)
    assert closed.type == pb.INCIDENT_EVENT_TYPE_CLOSED
    assert closed.incident.closed_at.ToNanoseconds() == last_seen + 1_000_000_000
    cam.frames(30)
    assert await drain(sub) == []


async def test_cooldown_blocks_reopening_until_it_ends(trackers: Trackers) -> None:
    tracker = trackers.make(close_after_s=1.0, cooldown_s=10.0)
    sub = tracker.subscribe()
    cam = Camera(tracker)
    cam.frames(3, KNIFE)
    cam.frames(10)
    opened, closed = await drain(sub)
    closed_ns = closed.incident.closed_at.ToNanoseconds()

    # In view again for the rest of the cooldown: nothing opens.
    while cam.now_ns < closed_ns + 10 * 10**9:
        cam.frame(KNIFE)
    assert await drain(sub) == []

    at = cam.frame(KNIFE)  # the first frame after the cooldown, with three sightings in view
    (reopened,) = await drain(sub)
    assert reopened.type == pb.INCIDENT_EVENT_TYPE_OPENED
    assert reopened.incident.opened_at.ToNanoseconds() == at
    assert reopened.incident.id != opened.incident.id


async def test_sightings_of_a_closed_incident_do_not_count_again(trackers: Trackers) -> None:
    tracker = trackers.make(min_frames=3, window=5, close_after_s=1.0, cooldown_s=0)
    sub = tracker.subscribe()
    cam = Camera(tracker)
    cam.frames(3, KNIFE)
    cam.skip(2.0)
    cam.frame()  # closes; the window still holds the three sightings
    assert kinds(await drain(sub)) == ["OPENED", "CLOSED"]
    cam.frame(KNIFE)
    cam.frame(KNIFE)
    assert await drain(sub) == []
    cam.frame(KNIFE)
    assert kinds(await drain(sub)) == ["OPENED"]


async def test_sources_and_classes_are_independent(trackers: Trackers) -> None:
    tracker = trackers.make(min_frames=3, window=5, close_after_s=1.0, cooldown_s=60.0)
    sub = tracker.subscribe()
    a, b = Camera(tracker, "cam-a"), Camera(tracker, "cam-b")
    for _ in range(2):
        a.frame(KNIFE)
        b.frame(KNIFE)
    # Four knife frames in all, but only two per source.
    assert await drain(sub) == []
    b.frame(KNIFE)
    (event,) = await drain(sub)
    assert event.incident.source_id == "cam-b"

    # cam-b's knife is open and then cooling down; cam-b's gun and cam-a's knife are not held up.
    b.frames(3, det("gun", 0.9))
    b.frames(8)  # long enough for the knife to close, not the gun
    a.frame(KNIFE)
    events = await drain(sub)
    assert sorted((e.incident.source_id, e.incident.class_name, e.type) for e in events) == [
        ("cam-a", "knife", pb.INCIDENT_EVENT_TYPE_OPENED),
        ("cam-b", "gun", pb.INCIDENT_EVENT_TYPE_OPENED),
        ("cam-b", "knife", pb.INCIDENT_EVENT_TYPE_CLOSED),
    ]


async def test_two_classes_in_one_frame_open_two_incidents(trackers: Trackers) -> None:
    tracker = trackers.make()
    sub = tracker.subscribe()
    cam = Camera(tracker)
    cam.frames(3, det("knife", 0.6), det("gun", 0.8))
    events = await drain(sub)
    assert sorted(e.incident.class_name for e in events) == ["gun", "knife"]
    peaks = sorted(e.incident.peak_confidence for e in events)
    assert peaks == [pytest.approx(0.6), pytest.approx(0.8)]
    assert events[0].incident.id != events[1].incident.id


async def test_non_weapons_never_open(trackers: Trackers) -> None:
    tracker = trackers.make(min_frames=1, window=1)
    sub = tracker.subscribe()
    cam = Camera(tracker)
    # The flag decides, not the name: a "knife" not configured as a weapon is just an object.
    cam.frames(100, det("person", 0.99, weapon=False), det("knife", 0.99, weapon=False))
    assert await drain(sub) == []


async def test_end_source_closes_at_its_last_frame(trackers: Trackers) -> None:
    tracker = trackers.make(close_after_s=5.0)
    sub = tracker.subscribe()
    cam = Camera(tracker)
    cam.frames(3, KNIFE)
    last = cam.frame()
    tracker.end_source("cam")
    opened, closed = await drain(sub)
    assert closed.type == pb.INCIDENT_EVENT_TYPE_CLOSED
    assert closed.incident.id == opened.incident.id
    assert closed.incident.closed_at.ToNanoseconds() == last


def test_config_is_checked(tmp_path: pathlib.Path) -> None:
    db = tmp_path / "incidents.sqlite3"
    with pytest.raises(ValueError, match="min_frames"):
        IncidentConfig(db, min_frames=6, window=5)
    with pytest.raises(ValueError, match="negative"):
        IncidentConfig(db, cooldown_s=-1)
