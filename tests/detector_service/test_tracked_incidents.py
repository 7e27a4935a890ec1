"""Incidents follow tracks, end to end: file sources of a blue square (a "knife" to the model of
``moving_objects``) hidden for a while, through capture → model → tracker → incidents → store.

With no cooldown, a knife unseen for longer than ``close_after_s`` and seen again would open a
second incident if incidents went by class alone: these scenes fail unless tracks are followed.
"""

from __future__ import annotations

import itertools
import pathlib
from typing import TYPE_CHECKING

import pytest

from detector_service.server import DetectorServer
from detector_service.settings import DetectorSettings
from tests.detector_service import moving_objects as mo
from tests.detector_service.test_tracking import FPS, TRACK_LOST_S, left, play
from vigil.detector.v1 import detector_service_pb2 as pb

if TYPE_CHECKING:  # the async stub type exists only in the .pyi stubs
    from vigil.detector.v1.detector_service_pb2_grpc import DetectorServiceAsyncStub as Stub


@pytest.fixture
def detector_settings(tmp_path: pathlib.Path) -> DetectorSettings:
    return DetectorSettings(
        port=0,
        backend="onnx",
        onnx_model_path=mo.build_model(tmp_path / "blue.onnx"),
        confidence=0.4,
        weapon_classes=["knife"],
        track_lost_s=TRACK_LOST_S,
        incident_min_frames=3,
        incident_window=5,
        incident_close_after_s=0.5,
        incident_cooldown_s=0.0,
        data_dir=tmp_path / "data",
        linger_s=0.2,
    )


async def incidents(stub: Stub, source_id: str) -> list[pb.Incident]:
    """The source's incidents, oldest first (the history sees every write queued before)."""
    page = await stub.ListIncidents(pb.ListIncidentsRequest(source_id=source_id))
    return list(reversed(page.incidents))


def hidden(
    scene: list[tuple[int, int]], start_s: float, for_s: float
) -> list[list[tuple[int, int]]]:
    """The scene's frames with the square out of sight from ``start_s`` for ``for_s``."""
    first, last = round(start_s * FPS), round((start_s + for_s) * FPS)
    return [[] if first <= n < last else [xy] for n, xy in enumerate(scene)]


def track_ids(frames: list[pb.Frame]) -> set[int]:
    return {i for f in frames for i in left(f)}


async def test_a_weapon_carried_across_the_scene_is_one_incident(
    detector: DetectorServer, detector_stub: Stub, tmp_path: pathlib.Path
) -> None:
    # Carried left to right over 3 s (in the left half: the model sees one knife there), out of
    # sight for 1 s on the way (behind a pillar).
    scene = hidden(mo.walk((0, 100), (2, 0), 60), start_s=1.2, for_s=1.0)
    frames = await play(detector_stub, "hall", mo.write_video(tmp_path / "carried.avi", scene, FPS))

    # The tracker followed it behind the pillar: one id before and after.
    assert len(track_ids(frames)) == 1
    reappeared_ns = next(
        g.capture_time.ToNanoseconds()
        for f, g in itertools.pairwise(frames)
        if not f.detections and g.detections
    )
    (incident,) = await incidents(detector_stub, "hall")
    # Closed while out of sight, and not opened again when it came back.
    assert incident.closed_at.ToNanoseconds() <= reappeared_ns
    assert [d.track_id for d in incident.detections] == list(track_ids(frames))


async def test_a_weapon_lying_still_does_not_alert_again(
    detector: DetectorServer, detector_stub: Stub, tmp_path: pathlib.Path
) -> None:
    # On a table for 4 s; a passer-by hides it for 1 s, so its incident closes meanwhile.
    scene = hidden([(100, 100)] * 80, start_s=1.0, for_s=1.0)
    frames = await play(detector_stub, "desk", mo.write_video(tmp_path / "still.avi", scene, FPS))

    assert len(track_ids(frames)) == 1
    (incident,) = await incidents(detector_stub, "desk")
    assert incident.HasField("closed_at")


async def test_a_weapon_gone_longer_than_its_track_alerts_again(
    detector: DetectorServer, detector_stub: Stub, tmp_path: pathlib.Path
) -> None:
    # Hidden for longer than track_lost_s: what comes back is a new track, so a new incident.
    scene = hidden([(100, 100)] * 90, start_s=1.0, for_s=TRACK_LOST_S + 0.5)
    frames = await play(detector_stub, "desk", mo.write_video(tmp_path / "back.avi", scene, FPS))

    assert len(track_ids(frames)) == 2
    first, second = await incidents(detector_stub, "desk")
    assert first.detections[0].track_id != second.detections[0].track_id
