"""Incidents follow tracks: scripted tracked detections (10 frames a second, no cooldown)."""

from __future__ import annotations

from detector_service.incidents.tracker import IncidentTracker
from tests.detector_service.incidents.conftest import Trackers
from tests.detector_service.incidents.helpers import Camera, det, drain, kinds
from vigil.common.v1 import common_pb2


def knife(track_id: int | None) -> common_pb2.Detection:
    found = det("knife", 0.8)
    if track_id is not None:
        found.track_id = track_id
    return found


def make(trackers: Trackers) -> IncidentTracker:
    return trackers.make(min_frames=3, window=5, close_after_s=1.0, cooldown_s=0, track_lost_s=5.0)


async def test_tracks_of_an_open_incident_never_open_another(trackers: Trackers) -> None:
    tracker = make(trackers)
    sub = tracker.subscribe()
    cam = Camera(tracker)
    cam.frame(knife(None))  # a new object's first sighting: not yet confirmed
    cam.frames(3, knife(1))
    cam.frames(3, knife(1), knife(2))  # a second knife while the first's incident is open
    cam.frames(12)  # both out of sight: the incident closes after 1 s
    cam.frames(30, knife(1), knife(2))  # both back, well within their tracks' 5 s
    assert kinds(await drain(sub)) == ["OPENED", "CLOSED"]

    cam.frames(3, knife(3))  # a knife the tracker has not seen before
    assert kinds(await drain(sub)) == ["OPENED"]


async def test_a_track_unseen_for_longer_than_its_time_is_forgotten(trackers: Trackers) -> None:
    tracker = make(trackers)
    sub = tracker.subscribe()
    cam = Camera(tracker)
    cam.frames(3, knife(1))
    cam.frames(12)
    cam.frames(3, knife(1))  # back after 1.2 s: still the same object, no new incident
    assert kinds(await drain(sub)) == ["OPENED", "CLOSED"]

    cam.frames(12)
    cam.skip(5.0)
    cam.frames(3, knife(1))  # an id unseen for over 5 s belongs to no live track any more
    assert kinds(await drain(sub)) == ["OPENED"]
