"""The health monitor on its own: which sources it watches, the copies it checks, the events it
hands on (kinds, times, texts, snapshots), and a bad frame that must not end its worker."""

from __future__ import annotations

import logging
import pathlib
import threading
import time
from collections.abc import Callable

import cv2
import numpy as np
import pytest
from skimage import data

from detector_service.backends.base import Image
from detector_service.camera_health import HealthEvent, HealthKind, Transition
from detector_service.health_monitor import CameraWatch, HealthMonitor, describe
from detector_service.settings import DetectorSettings
from vigil.detector.v1 import detector_service_pb2 as pb

Events = list[tuple[pb.SourceEvent, bytes | None]]
START_NS = 1_800_000_000 * 10**9


def settings(tmp_path: pathlib.Path, **values: float) -> DetectorSettings:
    base = DetectorSettings(backend="none", data_dir=tmp_path)
    return base.model_copy(update={"health_covered_after_s": 2.0, **values})


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "not reached within 30 s"
        time.sleep(0.01)


def spec(kind: pb.SourceKind.ValueType, ptz: bool = False) -> pb.SourceSpec:
    return pb.SourceSpec(id="cam", kind=kind, ptz=ptz)


def offer(watch: CameraWatch, frames: list[Image], seconds: float, start_ns: int) -> None:
    """A 15 fps camera's frames, offered one by one as its capture thread would."""
    for i in range(round(seconds * 15)):
        watch.offer(frames[i % len(frames)], start_ns + round(i * 1e9 / 15))
        time.sleep(0.001)  # the worker keeps up with a camera's pace, not a tight loop's


def offer_black(watch: CameraWatch, seconds: float) -> None:
    offer(watch, [np.zeros((720, 1280, 3), np.uint8)], seconds, START_NS)


def offer_live(watch: CameraWatch, seconds: float, start_ns: int) -> None:
    scene = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (1280, 720))
    rng = np.random.default_rng(0)
    # Three noise fields: the frames checked (every eighth) never repeat one in a row.
    frames = [
        np.clip(scene + rng.normal(0, 3, scene.shape), 0, 255).astype(np.uint8) for _ in range(3)
    ]
    offer(watch, frames, seconds, start_ns)


def test_only_cameras_are_watched_and_a_rate_of_zero_turns_checks_off(
    tmp_path: pathlib.Path,
) -> None:
    monitor = HealthMonitor(settings(tmp_path))
    off = HealthMonitor(settings(tmp_path, health_checks_per_s=0.0))
    try:
        assert monitor.watch(spec(pb.SOURCE_KIND_STREAM)) is not None
        assert monitor.watch(spec(pb.SOURCE_KIND_WEBCAM)) is not None
        assert monitor.watch(spec(pb.SOURCE_KIND_FILE)) is None
        assert monitor.watch(spec(pb.SOURCE_KIND_TEST_PATTERN)) is None
        assert off.watch(spec(pb.SOURCE_KIND_STREAM)) is None
        ptz = monitor.watch(spec(pb.SOURCE_KIND_STREAM, ptz=True))
        assert ptz is not None
        assert ptz.health.config.ptz
        ptz.configure(spec(pb.SOURCE_KIND_STREAM, ptz=False))  # UpdateSource
        assert not ptz.health.config.ptz
        assert ptz.health.config.covered_after_s == 2.0  # the rest as configured
    finally:
        monitor.close()
        off.close()
    assert not [t for t in threading.enumerate() if t.name == "camera-health"]


def test_a_raise_and_its_clear_reach_the_callback_with_a_small_snapshot(
    tmp_path: pathlib.Path,
) -> None:
    events: Events = []
    monitor = HealthMonitor(
        settings(tmp_path, health_height=360), on_event=lambda e, s: events.append((e, s))
    )
    try:
        watch = monitor.watch(spec(pb.SOURCE_KIND_STREAM))
        assert watch is not None
        offer_black(watch, 4.0)
        wait_for(lambda: len(events) == 1)
        raised, snapshot = events[0]
        covered = pb.SOURCE_EVENT_KIND_CAMERA_COVERED
        assert (raised.source_id, raised.kind, raised.cleared) == ("cam", covered, False)
        # Raised at the first check 2 s (health_covered_after_s) after the first frame.
        assert 2.0 <= (raised.at.ToNanoseconds() - START_NS) / 1e9 < 2.6
        assert raised.detail.startswith("for 2 s: brightness 0/255, contrast 0.0")
        assert watch.problems == (covered,)
        assert snapshot is not None
        picture = cv2.imdecode(np.frombuffer(snapshot, np.uint8), cv2.IMREAD_COLOR)
        assert picture is not None
        assert picture.shape == (360, 640, 3)  # the subsampled copy, not the 720p frame

        offer_live(watch, 4.0, START_NS + 4 * 10**9)  # uncovered
        wait_for(lambda: len(events) == 2)
        cleared, _ = events[1]
        assert (cleared.kind, cleared.cleared) == (covered, True)
        assert cleared.detail.startswith("cleared after ")
        assert not watch.problems
    finally:
        monitor.close()


def test_a_bad_frame_is_logged_and_the_checks_go_on(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="detector_service.health_monitor")
    events: Events = []
    monitor = HealthMonitor(settings(tmp_path), on_event=lambda e, s: events.append((e, s)))
    try:
        broken = monitor.watch(pb.SourceSpec(id="broken", kind=pb.SOURCE_KIND_WEBCAM))
        watch = monitor.watch(spec(pb.SOURCE_KIND_WEBCAM))
        assert broken is not None
        assert watch is not None
        broken.offer(np.zeros((240, 320), np.float32), START_NS)  # not a BGR picture
        wait_for(lambda: "camera health check of broken failed" in caplog.text)
        offer_black(watch, 4.0)
        wait_for(lambda: len(events) == 1)
        assert events[0][0].source_id == "cam"
    finally:
        monitor.close()


def event(kind: HealthKind, transition: Transition, **values: float) -> HealthEvent:
    frame = np.zeros((4, 4, 3), np.uint8)
    return HealthEvent(kind, transition, 100.0, 112.4, values, frame)


@pytest.mark.parametrize(
    ("health", "text"),
    [
        (
            event(HealthKind.FROZEN, Transition.RAISED, changed_fraction=0.0012),
            "for 12 s: 0.1% of the pixels changed between checks",
        ),
        (
            event(HealthKind.COVERED, Transition.CLEARED, brightness=120.2, contrast=40.0),
            "cleared after 12 s: brightness 120/255, contrast 40.0",
        ),
        (
            event(HealthKind.DEFOCUSED, Transition.RAISED, sharpness=0.012, baseline=0.1),
            "for 12 s: sharpness 12% of the camera's baseline",
        ),
        (
            event(
                HealthKind.MOVED, Transition.RAISED, similarity=0.23, shift_x=-61.4, shift_y=19.6
            ),
            "for 12 s: the picture's edges 23% like its reference view, shifted 61 px left "
            "and 20 px down",
        ),
        (
            event(HealthKind.MOVED, Transition.CLEARED, relearnt=1.0),
            "cleared after 12 s: the new view is the camera's reference now",
        ),
    ],
)
def test_each_event_says_what_was_measured(health: HealthEvent, text: str) -> None:
    assert describe(health) == text
