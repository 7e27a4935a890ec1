"""The motion detector on synthetic scenes: a photograph with sensor noise and a moving object."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

import cv2
import numpy as np
import pytest
from skimage import data

from detector_service.backends.base import Image
from detector_service.motion import Box, MotionConfig, MotionDetector, MotionResult

W, H = 1280, 720


def background() -> Image:
    photo = cv2.cvtColor(data.chelsea(), cv2.COLOR_RGB2BGR)
    return np.asarray(cv2.resize(photo, (W, H), interpolation=cv2.INTER_LINEAR), np.uint8)


def noisy(image: Image, rng: np.random.Generator, sigma: float = 3.0) -> Image:
    """A camera's picture: the scene plus fresh sensor noise on every frame."""
    noise = rng.standard_normal(image.shape, dtype=np.float32) * sigma
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def with_person(image: Image, x: int, y: int, w: int = 60, h: int = 140, shade: int = 40) -> Image:
    """A textured upright body at (x, y), dark by default: a person to a motion detector."""
    out = image.copy()
    body = np.full((h, w, 3), shade, np.uint8)
    body[::8] = shade + 50  # stripes, so the object has texture like clothing
    out[y : y + h, x : x + w] = body
    return out


def warm_up(detector: MotionDetector, scene: Image, rng: np.random.Generator) -> None:
    for _ in range(15):
        detector.update(noisy(scene, rng))
    assert not detector.calibrating


def test_static_noisy_scene_reports_no_motion_after_warm_up() -> None:
    rng = np.random.default_rng(1)
    detector = MotionDetector()
    scene = background()
    first = detector.update(noisy(scene, rng))
    assert first.calibrating
    assert not first.boxes
    results = [detector.update(noisy(scene, rng)) for _ in range(60)]
    settled = results[5:]
    assert not any(r.calibrating for r in settled)
    assert all(r.boxes == () for r in settled)
    assert max(r.changed_fraction for r in settled) < 0.001


def covers(box: Box, x1: int, y1: int, x2: int, y2: int, slack: int = 24) -> bool:
    """``box`` contains the object and is at most ``slack`` px larger on each side."""
    inside = box.x1 <= x1 and box.y1 <= y1 and box.x2 >= x2 and box.y2 >= y2
    tight = x1 - box.x1 <= slack and y1 - box.y1 <= slack
    return inside and tight and box.x2 - x2 <= slack and box.y2 - y2 <= slack


def test_moving_object_is_boxed_in_full_resolution_pixels() -> None:
    rng = np.random.default_rng(2)
    detector = MotionDetector()
    scene = background()
    warm_up(detector, scene, rng)
    result = MotionResult((), 0.0, True)
    for step in range(8):
        x = 700 + 12 * step
        result = detector.update(noisy(with_person(scene, x, 420), rng))
    assert not result.calibrating
    assert len(result.boxes) == 1, result.boxes
    # The box surrounds where the object is now (and the trail it left in the background).
    box = result.boxes[0]
    assert covers(box, x, 420, x + 60, 560, slack=100)
    assert box.x1 >= 700 - 24
    assert box.y1 >= 420 - 24
    assert box.y2 <= 560 + 24
    assert 0.003 < result.changed_fraction < 0.05


def test_object_appearing_in_still_scene_gets_a_tight_box() -> None:
    rng = np.random.default_rng(3)
    detector = MotionDetector()
    scene = background()
    warm_up(detector, scene, rng)
    result = detector.update(noisy(with_person(scene, 200, 100), rng))
    assert len(result.boxes) == 1
    assert covers(result.boxes[0], 200, 100, 260, 240)


@pytest.mark.parametrize(("threshold", "reported"), [(25, False), (10, True)])
def test_sensitivity_decides_whether_faint_motion_counts(threshold: int, reported: bool) -> None:
    rng = np.random.default_rng(10)
    detector = MotionDetector(MotionConfig(threshold=threshold))
    scene = background()
    warm_up(detector, scene, rng)
    # A faint shadow: 18 grey levels darker over a person-sized area.
    shadowed = scene.astype(np.int16)
    shadowed[300:440, 600:660] -= 18
    faint = np.clip(shadowed, 0, 255).astype(np.uint8)
    result = detector.update(noisy(faint, rng))
    assert bool(result.boxes) is reported
    if reported:
        assert covers(result.boxes[0], 600, 300, 660, 440)


@pytest.mark.parametrize(("min_area", "reported"), [(MotionConfig().min_area, False), (0.0, True)])
def test_small_flicker_below_min_area_is_ignored(min_area: float, reported: bool) -> None:
    rng = np.random.default_rng(4)
    detector = MotionDetector(MotionConfig(min_area=min_area))
    scene = background()
    warm_up(detector, scene, rng)
    # A 12×12 px blink (an insect, a compression artefact): below the default minimum area.
    result = detector.update(noisy(with_person(scene, 600, 300, w=12, h=12), rng))
    assert result.changed_fraction > 0
    assert bool(result.boxes) is reported


def test_mask_suppresses_motion_inside_it_only() -> None:
    rng = np.random.default_rng(5)
    # Ignore the top-left quarter (say, a clock overlay and a tree).
    mask = ((0.0, 0.0), (0.5, 0.0), (0.5, 0.5), (0.0, 0.5))
    detector = MotionDetector(MotionConfig(masks=(mask,)))
    scene = background()
    warm_up(detector, scene, rng)
    inside = detector.update(noisy(with_person(scene, 200, 100), rng))
    assert inside.boxes == ()
    assert inside.changed_fraction == 0.0
    warm_up(detector, scene, rng)
    outside = detector.update(noisy(with_person(scene, 900, 450), rng))
    assert len(outside.boxes) == 1
    assert covers(outside.boxes[0], 900, 450, 960, 590)


def lights_off(image: Image) -> Image:
    return (image.astype(np.float32) * 0.35).astype(np.uint8)


def infrared(image: Image) -> Image:
    """Night mode: grey, darker, lit by the camera's own illuminator (bright centre)."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
    yy, xx = np.mgrid[0:H, 0:W]
    falloff = ((xx - W / 2) / (W / 2)) ** 2 + ((yy - H / 2) / (H / 2)) ** 2
    lit = np.clip(grey * (0.9 - 0.45 * falloff), 0, 255).astype(np.uint8)
    return np.asarray(cv2.cvtColor(lit, cv2.COLOR_GRAY2BGR), np.uint8)


@pytest.mark.parametrize("change", [lights_off, infrared])
def test_global_change_recalibrates_instead_of_reporting_motion(
    change: Callable[[Image], Image],
) -> None:
    rng = np.random.default_rng(6)
    detector = MotionDetector()
    scene = background()
    warm_up(detector, scene, rng)
    changed_scene = change(scene)
    results = [detector.update(noisy(changed_scene, rng)) for _ in range(10)]
    assert results[0].global_change
    assert results[0].calibrating
    assert all(r.boxes == () for r in results), [r.boxes for r in results]
    assert not results[-1].calibrating
    # Recalibrated on the new picture: motion there is found again.
    # (Light clothes, seen on the dark picture; a body may come out in parts that cover it.)
    moved = detector.update(noisy(with_person(changed_scene, 500, 300, shade=160), rng))
    assert moved.boxes
    assert covers(functools.reduce(Box.union, moved.boxes), 500, 300, 560, 440)


def test_small_exposure_drift_is_not_motion() -> None:
    rng = np.random.default_rng(7)
    detector = MotionDetector()
    scene = background()
    warm_up(detector, scene, rng)
    # Auto-exposure darkens everything by 20% in one step: bright areas change by more than
    # the threshold, but the picture as a whole moved together.
    darker = np.asarray(cv2.convertScaleAbs(scene, alpha=0.8, beta=0), np.uint8)
    result = detector.update(noisy(darker, rng))
    assert result.boxes == ()
    assert not result.global_change
    assert not result.calibrating


def test_resolution_change_restarts_calibration() -> None:
    rng = np.random.default_rng(8)
    detector = MotionDetector()
    warm_up(detector, background(), rng)
    small = np.asarray(cv2.resize(background(), (640, 360)), np.uint8)
    assert detector.update(noisy(small, rng)).calibrating


@pytest.mark.parametrize(
    "frame",
    [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32), [[0, 0, 0]]],
)
def test_bad_frames_are_refused_with_a_clear_error(frame: object) -> None:
    with pytest.raises(ValueError, match="frame must be"):
        MotionDetector().update(frame)  # type: ignore[arg-type]


def test_bad_config_is_refused() -> None:
    with pytest.raises(ValueError, match="normalised"):
        MotionConfig(masks=(((0.0, 0.0), (2.0, 0.0), (0.0, 1.0)),))
    with pytest.raises(ValueError, match="threshold"):
        MotionConfig(threshold=0)


def test_cost_per_720p_frame() -> None:
    """Prints the cost of ``update`` on a 720p frame; a figure for the record, never asserted."""
    rng = np.random.default_rng(9)
    detector = MotionDetector()
    scene = background()
    frames = [noisy(with_person(scene, 100 + 10 * i, 300), rng) for i in range(40)]
    for frame in frames[:10]:
        detector.update(frame)
    start = time.perf_counter()
    for frame in frames[10:]:
        detector.update(frame)
    per_frame_ms = (time.perf_counter() - start) / 30 * 1000
    print(f"\nmotion update: {per_frame_ms:.2f} ms per 1280x720 frame (one thread)")
