"""Motion first: a still scene with sensor noise reports nothing, a moving object is found where
it is, masks hide what should be ignored, the light changing is not motion, and motion becomes
detector regions that keep small objects at full resolution."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
from skimage import data

from detector_service.motion import MotionConfig, MotionDetector, Region, plan_regions

W, H = 1280, 720


@pytest.fixture(scope="module")
def background() -> np.ndarray:
    """A textured 720p scene: a photograph shipped with scikit-image, stretched."""
    photo = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    scene: np.ndarray = cv2.resize(photo, (W, H), interpolation=cv2.INTER_LINEAR)
    return scene


_NOISE: dict[tuple[int, ...], list[np.ndarray]] = {}


def noisy(frame: np.ndarray, rng: np.random.Generator, sigma: float = 4.0) -> np.ndarray:
    """A camera never delivers the same picture twice: sensor noise (one of a few precomputed
    fields, picked at random: drawing a fresh 720p field per frame would dominate the test)."""
    fields = _NOISE.get(frame.shape)
    if fields is None:
        maker = np.random.default_rng(0)
        fields = [maker.normal(0, sigma, frame.shape).astype(np.int16) for _ in range(8)]
        _NOISE[frame.shape] = fields
    noise = fields[int(rng.integers(len(fields)))]
    out: np.ndarray = np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    return out


def with_object(frame: np.ndarray, x: int, y: int, w: int = 60, h: int = 120) -> np.ndarray:
    """An object striped black and white, so every part of it stands out from any scene."""
    out = frame.copy()
    stripes = np.where((np.arange(h) // 8) % 2 == 0, 235, 15).astype(np.uint8)
    out[y : y + h, x : x + w] = stripes[:, None, None]
    return out


def settle(detector: MotionDetector, frame: np.ndarray, rng: np.random.Generator) -> None:
    for _ in range(30):
        detector.update(noisy(frame, rng))
    assert not detector.update(noisy(frame, rng)).calibrating


def test_a_still_noisy_scene_has_no_motion(background: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    detector = MotionDetector()
    first = detector.update(noisy(background, rng))
    assert first.calibrating
    assert not first.motion
    settle(detector, background, rng)
    results = [detector.update(noisy(background, rng)) for _ in range(100)]
    assert not any(r.motion for r in results)
    assert max(r.changed_fraction for r in results) < 0.01


def test_a_moving_object_is_found_where_it_is(background: np.ndarray) -> None:
    rng = np.random.default_rng(2)
    detector = MotionDetector()
    settle(detector, background, rng)
    for step in range(10):
        x, y = 200 + step * 40, 300
        result = detector.update(noisy(with_object(background, x, y), rng))
        assert not result.calibrating
        assert len(result.boxes) >= 1, f"step {step}: no motion"
        # Full-frame coordinates: the union of the boxes covers the object, snugly (within a
        # cell of the small frame, 4 px here, where the object's edge matches the scene's grey).
        x1 = min(b[0] for b in result.boxes)
        y1 = min(b[1] for b in result.boxes)
        x2 = max(b[2] for b in result.boxes)
        y2 = max(b[3] for b in result.boxes)
        assert x1 <= x + 8
        assert y1 <= y + 8
        assert x2 >= x + 60 - 8
        assert y2 >= y + 120 - 8
        # The union also holds where the object just was; nothing far from it counts.
        assert x1 >= x - 40 - 30
        assert x2 <= x + 60 + 30
        assert y2 - y1 <= 120 + 60


def test_a_mask_hides_motion_inside_it(background: np.ndarray) -> None:
    rng = np.random.default_rng(3)
    # The clock overlay's corner: top left quarter of the frame.
    mask = ((0.0, 0.0), (0.5, 0.0), (0.5, 0.5), (0.0, 0.5))
    detector = MotionDetector(MotionConfig(masks=(mask,)))
    unmasked = MotionDetector()
    settle(detector, background, rng)
    settle(unmasked, background, rng)
    for step in range(5):
        frame = noisy(with_object(background, 100 + step * 40, 60), rng)
        assert not detector.update(frame).motion
        assert unmasked.update(frame).motion
    # Outside the mask the same object is seen.
    frame = noisy(with_object(background, 900, 500), rng)
    assert detector.update(frame).motion


def test_the_light_changing_is_not_motion(background: np.ndarray) -> None:
    rng = np.random.default_rng(4)
    detector = MotionDetector()
    settle(detector, background, rng)
    # The camera switches to night mode: grey and much darker, all at once.
    grey = cv2.cvtColor(cv2.cvtColor(background, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    night = (grey * 0.4).astype(np.uint8)
    switched = detector.update(noisy(night, rng))
    assert switched.calibrating
    assert not switched.motion
    results = [detector.update(noisy(night, rng)) for _ in range(30)]
    assert not any(r.motion for r in results)
    assert not results[-1].calibrating
    # And motion in the new scene is seen again.
    assert detector.update(noisy(with_object(night, 600, 300), rng)).motion


def test_an_object_that_stays_is_learnt_into_the_background(background: np.ndarray) -> None:
    rng = np.random.default_rng(5)
    detector = MotionDetector(MotionConfig(settle_frames=5))
    settle(detector, background, rng)
    parked = with_object(background, 500, 300, 200, 100)
    results = [detector.update(noisy(parked, rng)) for _ in range(200)]
    assert results[0].motion
    assert not results[-1].motion


def test_a_new_frame_size_starts_over(background: np.ndarray) -> None:
    rng = np.random.default_rng(6)
    detector = MotionDetector()
    settle(detector, background, rng)
    smaller = cv2.resize(background, (640, 360))
    assert detector.update(noisy(smaller, rng)).calibrating


def test_cost_per_720p_frame(background: np.ndarray) -> None:
    """Printed, never asserted: figures belong to benchmarks."""
    rng = np.random.default_rng(7)
    frames = [noisy(background, rng) for _ in range(20)]
    detector = MotionDetector()
    for frame in frames:
        detector.update(frame)
    started = time.perf_counter()
    for frame in frames * 5:
        detector.update(frame)
    per_frame_ms = (time.perf_counter() - started) / 100 * 1000
    print(f"motion update: {per_frame_ms:.2f} ms per 720p frame")
    assert per_frame_ms > 0


def test_small_motion_gets_a_full_resolution_crop() -> None:
    regions = plan_regions([(600, 300, 640, 380)], W, H, model_size=416)
    assert len(regions) == 1
    region = regions[0]
    assert (region.width, region.height) == (416, 416)
    assert region.x1 <= 600
    assert region.x2 >= 640
    assert region.y1 <= 300
    assert region.y2 >= 380


def test_a_crop_at_the_edge_moves_inside_the_frame() -> None:
    (region,) = plan_regions([(1250, 690, 1280, 720)], W, H, model_size=416)
    assert (region.x2, region.y2) == (W, H)
    assert (region.width, region.height) == (416, 416)


def test_overlapping_crops_merge_and_far_ones_stay_apart() -> None:
    near = plan_regions([(100, 100, 140, 180), (200, 120, 240, 200)], W, H)
    assert len(near) == 1
    assert near[0].x1 <= 100
    assert near[0].x2 >= 240
    far = plan_regions([(100, 100, 140, 180), (1100, 500, 1140, 580)], W, H)
    assert len(far) == 2


def test_large_or_scattered_motion_gets_the_whole_frame() -> None:
    whole = Region(0, 0, W, H)
    assert plan_regions([(100, 50, 900, 700)], W, H) == [whole]
    scattered = [(x, y, x + 20, y + 20) for x in (50, 450, 850) for y in (50, 600)]
    assert plan_regions(scattered, W, H, max_regions=4) == [whole]
    assert plan_regions([], W, H) == []


def test_boxes_found_in_a_crop_map_back_to_the_frame() -> None:
    frame = np.zeros((H, W, 3), np.uint8)
    (region,) = plan_regions([(600, 300, 640, 380)], W, H)
    crop = region.crop(frame)
    assert crop.shape[:2] == (region.height, region.width)
    crop[10:20, 30:40] = 255  # a view: this marks the frame itself
    ys, xs = np.nonzero(frame[:, :, 0])
    found = region.to_frame(np.array([[30, 10, 40, 20]], np.float32))
    assert found.tolist() == [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]]
