"""Camera health on synthetic sequences: each tamper event, and normal life that must not be one.

Frames come at 1 fps with made-up timestamps (the checks run on frame time, never the clock), so a
minute of camera costs a second of test.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable

import cv2
import numpy as np
import pytest
from skimage import data

from detector_service.backends.base import Image
from detector_service.camera_health import (
    CameraHealth,
    HealthConfig,
    HealthEvent,
    HealthKind,
    Transition,
)

# 640×360 keeps the suite quick on a small box; the checks scale every picture down anyway.
W, H = 640, 360
_PANORAMA = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (W + 200, H + 200))
# Sensor noise fields drawn once and cycled (never the same twice in a row): drawing fresh
# noise for every frame would cost more than the checks under test.
_NOISE = [np.random.default_rng(i).standard_normal((H, W, 3), np.float32) for i in range(7)]
_FRAME_NUMBER = itertools.count()


def view(dx: int = 0, dy: int = 0) -> Image:
    """The camera's picture when aimed (dx, dy) pixels away from its installed position."""
    return np.ascontiguousarray(_PANORAMA[100 + dy : 100 + dy + H, 100 + dx : 100 + dx + W])


def noisy(image: Image, rng: np.random.Generator, sigma: float = 3.0) -> Image:
    """A live camera's picture: sensor noise that differs from one frame to the next."""
    if image.shape != (H, W, 3):
        noise = rng.standard_normal(image.shape, dtype=np.float32)
    else:
        # Cycling through 7 fields: consecutive frames never share their noise.
        noise = _NOISE[next(_FRAME_NUMBER) % len(_NOISE)]
    return np.clip(image + noise * sigma, 0, 255).astype(np.uint8)


def night(image: Image, rng: np.random.Generator) -> Image:
    """Infrared mode: no colour, darker, much noisier."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32) * 0.45 + 10
    ir = np.asarray(cv2.cvtColor(grey.astype(np.uint8), cv2.COLOR_GRAY2BGR), np.uint8)
    return noisy(ir, rng, sigma=8.0)


def blurred(image: Image, sigma: float = 4.0) -> Image:
    return np.asarray(cv2.GaussianBlur(image, (0, 0), sigma), np.uint8)


def uniform(level: int) -> Image:
    return np.full((H, W, 3), level, np.uint8)


class Camera:
    """Feeds a CameraHealth one frame a second and keeps every event it returned."""

    def __init__(self, config: HealthConfig | None = None, seed: int = 0) -> None:
        self.health = CameraHealth(config)
        self.rng = np.random.default_rng(seed)
        self.now = 1_000_000.0
        self.events: list[HealthEvent] = []

    def run(self, seconds: int, picture: Callable[[int], Image], step: float = 1.0) -> None:
        """``picture(i)`` is the frame at the i-th step; noise is the caller's choice."""
        for i in range(int(seconds / step)):
            self.events += self.health.update(picture(i), self.now)
            self.now += step

    def live(self, seconds: int, image: Image, sigma: float = 3.0) -> None:
        self.run(seconds, lambda _: noisy(image, self.rng, sigma))

    def kinds(self, transition: Transition | None = None) -> list[HealthKind]:
        return [e.kind for e in self.events if transition in (None, e.transition)]


def only(events: Iterable[HealthEvent], kind: HealthKind, transition: Transition) -> HealthEvent:
    [event] = [e for e in events if e.kind is kind and e.transition is transition]
    return event


# --- normal life: nothing to report --------------------------------------------------------


def test_static_scene_with_sensor_noise_raises_nothing() -> None:
    camera = Camera()
    camera.live(120, view())
    assert camera.events == []
    assert camera.health.last is not None
    assert camera.health.last.changed_fraction is not None
    # Noise: a third of the pixels differ by more than the tolerance, 30 times the threshold.
    assert camera.health.last.changed_fraction > 0.3


def test_static_scene_through_a_lossy_encoder_is_not_frozen() -> None:
    # JPEG at quality 60 smooths faint noise away in flat areas: still far from a repeated frame.
    def encoded(_: int) -> Image:
        ok, buf = cv2.imencode(
            ".jpg", noisy(view(), camera.rng, 1.0), [cv2.IMWRITE_JPEG_QUALITY, 60]
        )
        assert ok
        return np.asarray(cv2.imdecode(buf, cv2.IMREAD_COLOR), np.uint8)

    camera = Camera()
    camera.run(60, encoded)
    assert camera.events == []


def test_switch_to_night_mode_raises_nothing() -> None:
    camera = Camera()
    camera.live(60, view())
    camera.run(120, lambda _: night(view(), camera.rng))
    camera.live(60, view())
    assert camera.events == []


def test_slow_lighting_change_over_a_day_raises_nothing() -> None:
    camera = Camera()

    def daylight(i: int) -> Image:
        # A frame every 4 minutes over 24 h; the light from full sun to dusk (30%) and back.
        gain = 0.65 + 0.35 * np.cos(2 * np.pi * i / 360)
        return noisy(np.asarray(cv2.convertScaleAbs(view(), alpha=gain), np.uint8), camera.rng)

    camera.run(24 * 3600, daylight, step=240.0)
    assert camera.events == []


def test_lights_dimmed_at_once_raise_nothing() -> None:
    # Sharpness is relative to the picture's own contrast: a dim picture is not a blurred one.
    camera = Camera()
    camera.live(60, view())
    camera.live(120, np.asarray(cv2.convertScaleAbs(view(), alpha=0.3), np.uint8))
    assert camera.events == []


def test_wind_jitter_and_people_passing_are_not_a_move() -> None:
    camera = Camera()
    camera.live(30, view())

    def windy_with_walker(i: int) -> Image:
        picture = view(dx=int(4 * np.sin(i)), dy=int(2 * np.cos(i)))  # a pole swaying
        x = (50 + 20 * i) % (W - 150)
        picture[100:325, x : x + 100] = 50  # a person walking past, close to the camera
        return noisy(picture, camera.rng)

    camera.run(120, windy_with_walker)
    assert HealthKind.MOVED not in camera.kinds()
    assert camera.events == []


# --- each event, raised and cleared -------------------------------------------------------


def test_frozen_picture_is_raised_then_cleared() -> None:
    camera = Camera()
    camera.live(20, view())
    frozen_at = camera.now
    stuck = noisy(view(), camera.rng)
    camera.run(30, lambda _: stuck.copy())  # a decoder repeating its last picture
    raised = only(camera.events, HealthKind.FROZEN, Transition.RAISED)
    assert raised.started_at == frozen_at
    assert raised.at == frozen_at + 10  # frozen_after_s, counted from the first repeat
    assert raised.values["changed_fraction"] == 0.0
    assert raised.frame is not None
    np.testing.assert_array_equal(raised.frame, stuck)
    assert set(camera.kinds()) == {HealthKind.FROZEN}  # a frozen picture is not covered, etc.

    camera.live(10, view())
    cleared = only(camera.events, HealthKind.FROZEN, Transition.CLEARED)
    assert cleared.started_at == frozen_at
    assert cleared.at == frozen_at + 30 + 3  # clear_after_s of live pictures
    assert camera.health.active == {}


@pytest.mark.parametrize(
    ("cover", "sigma"),
    [
        pytest.param(uniform(28), 4.0, id="hand-over-lens"),
        pytest.param(uniform(4), 2.0, id="black"),
        pytest.param(uniform(200), 3.0, id="white-bag"),
    ],
)
def test_covered_or_black_picture_is_raised_then_cleared(cover: Image, sigma: float) -> None:
    camera = Camera()
    camera.live(20, view())
    covered_at = camera.now
    camera.live(30, cover, sigma)
    raised = only(camera.events, HealthKind.COVERED, Transition.RAISED)
    assert raised.started_at == covered_at
    assert raised.at == covered_at + 5
    assert raised.values["contrast"] < 6
    # Nothing else: a covered camera is neither defocused nor moved.
    assert camera.kinds() == [HealthKind.COVERED]

    camera.live(10, view())
    assert camera.kinds() == [HealthKind.COVERED, HealthKind.COVERED]
    assert camera.events[-1].transition is Transition.CLEARED
    assert camera.health.active == {}


def test_loss_of_focus_is_raised_against_the_cameras_own_baseline_then_cleared() -> None:
    camera = Camera()
    camera.live(60, view())
    blurred_at = camera.now
    camera.live(60, blurred(view()))
    raised = only(camera.events, HealthKind.DEFOCUSED, Transition.RAISED)
    assert raised.started_at == blurred_at
    assert raised.at == blurred_at + 30
    assert raised.values["sharpness"] < 0.35 * raised.values["baseline"]
    assert camera.kinds() == [HealthKind.DEFOCUSED]  # edges are blurred, not moved

    camera.live(10, view())
    assert only(camera.events, HealthKind.DEFOCUSED, Transition.CLEARED).at == blurred_at + 63


def test_brief_blur_is_not_a_loss_of_focus() -> None:
    camera = Camera()
    camera.live(60, view())
    camera.live(20, blurred(view()))  # autofocus hunting for 20 s: below defocus_after_s
    camera.live(60, view())
    assert camera.events == []


def test_moved_camera_is_raised_with_its_shift_then_cleared() -> None:
    camera = Camera()
    camera.live(60, view())
    moved_at = camera.now
    camera.live(30, view(dx=60, dy=20))  # knocked aside
    raised = only(camera.events, HealthKind.MOVED, Transition.RAISED)
    assert raised.started_at == moved_at
    assert raised.at == moved_at + 10
    assert raised.values["similarity"] < 0.5
    # Phase correlation tells which way: the picture content moved left and up.
    assert raised.values["shift_x"] == pytest.approx(-60, abs=10)
    assert raised.values["shift_y"] == pytest.approx(-20, abs=10)
    assert camera.kinds() == [HealthKind.MOVED]

    camera.live(10, view())  # put back
    assert only(camera.events, HealthKind.MOVED, Transition.CLEARED).at == moved_at + 33


# --- PTZ ----------------------------------------------------------------------------------


def test_ptz_move_on_purpose_is_not_a_move_and_the_new_view_becomes_the_reference() -> None:
    camera = Camera()
    camera.live(60, view())
    camera.health.expect_move(until=camera.now + 10)
    camera.run(10, lambda i: noisy(view(dx=10 * i, dy=3 * i), camera.rng))  # slewing
    camera.live(120, view(dx=100, dy=30))  # the preset it moved to
    assert camera.events == []

    # The new view is the reference now: going back to the old one unannounced is a move.
    camera.live(30, view())
    assert camera.kinds() == [HealthKind.MOVED]


def test_expected_move_clears_a_raised_move() -> None:
    camera = Camera()
    camera.live(60, view())
    camera.live(20, view(dx=100, dy=30))
    assert camera.kinds() == [HealthKind.MOVED]
    camera.health.expect_move(until=camera.now)  # the operator accepts the new aim
    camera.live(30, view(dx=100, dy=30))
    cleared = only(camera.events, HealthKind.MOVED, Transition.CLEARED)
    assert cleared.values == {"relearnt": 1.0}
    assert camera.health.active == {}


def test_moved_check_can_be_off_for_a_patrolling_ptz_camera() -> None:
    camera = Camera(HealthConfig(ptz=True))
    camera.live(60, view())
    camera.live(60, view(dx=100, dy=30))
    assert camera.events == []


# --- input --------------------------------------------------------------------------------


def test_new_resolution_is_learnt_afresh_without_events() -> None:
    camera = Camera()
    camera.live(60, view())
    small = np.asarray(cv2.resize(view(), (320, 180), interpolation=cv2.INTER_AREA), np.uint8)
    camera.live(60, small)
    assert camera.events == []


def test_bad_input_is_refused_with_a_clear_error() -> None:
    health = CameraHealth()
    health.update(view(), 10.0)
    with pytest.raises(ValueError, match="backwards"):
        health.update(view(), 9.0)
    with pytest.raises(ValueError, match="finite"):
        health.update(view(), float("nan"))
    with pytest.raises(ValueError, match="frame must be"):
        health.update(np.zeros((4, 4), np.float32), 11.0)
    with pytest.raises(ValueError, match="moved_min_similarity"):
        HealthConfig(moved_min_similarity=2.0)


def test_cost_per_720p_frame() -> None:
    """Prints the cost of ``update`` on a 720p frame; a figure for the record, never asserted."""
    rng = np.random.default_rng(1)
    health = CameraHealth()
    big = np.asarray(cv2.resize(view(), (1280, 720)), np.uint8)
    frames = [noisy(big, rng) for _ in range(20)]
    for i, frame in enumerate(frames[:10]):
        health.update(frame, float(i))
    start = time.perf_counter()
    for i, frame in enumerate(frames[10:]):
        health.update(frame, float(10 + i))
    per_frame_ms = (time.perf_counter() - start) / 10 * 1000
    print(f"\ncamera health update: {per_frame_ms:.2f} ms per 1280x720 frame (one thread)")
