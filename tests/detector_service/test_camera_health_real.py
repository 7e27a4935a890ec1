"""Camera health against what real cameras do: encoders refining a frozen picture, infrared
night pictures that look and focus differently, PTZ cameras moving with nobody announcing it.

Synthetic sequences at 1 fps on frame time, as in ``test_camera_health``; each "nothing raised"
case has a control that shows the same pictures would raise without the behaviour under test.
"""

from __future__ import annotations

import cv2
import numpy as np

from detector_service.backends.base import Image
from detector_service.camera_health import HealthConfig, HealthKind, Transition
from tests.detector_service.test_camera_health import Camera, H, W, blurred, noisy, only, view


def infrared(image: Image, rng: np.random.Generator, tint: float = 0.0) -> Image:
    """Infrared night mode: grey, brighter in the illuminator's beam, and softer (lenses focus
    infrared behind visible light). ``tint`` adds colour: the control that is not grey."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
    grey = cv2.GaussianBlur(grey, (0, 0), 1.5) * 1.15 + 15
    picture = np.repeat(np.clip(grey, 0, 255)[:, :, None], 3, axis=2)
    picture[:, :, 2] += tint  # red
    # Sensor noise in luma only: an infrared picture has no colour, noise included.
    noise = rng.standard_normal((H, W, 1), dtype=np.float32) * 4
    return np.clip(picture + noise, 0, 255).astype(np.uint8)


def encoder_refining(stuck: Image, rng: np.random.Generator) -> Image:
    """What a decoder shows of a camera stuck on one picture: the encoder keeps refining it, so
    most pixels move by a level, a few (keyframes) by two or three."""
    steps = rng.integers(-1, 2, stuck.shape, dtype=np.int16)
    steps[rng.random(stuck.shape) < 0.001] *= 3
    return np.clip(stuck.astype(np.int16) + steps, 0, 255).astype(np.uint8)


def zoomed(image: Image) -> Image:
    """Zoomed in 2x on the centre: a softer picture of a smaller area."""
    crop = image[H // 4 : H // 4 + H // 2, W // 4 : W // 4 + W // 2]
    return np.asarray(cv2.resize(crop, (W, H), interpolation=cv2.INTER_LINEAR), np.uint8)


def test_a_frozen_picture_refined_by_the_encoder_is_frozen() -> None:
    camera = Camera()
    camera.live(20, view())
    stuck = noisy(view(), camera.rng)
    camera.run(30, lambda _: encoder_refining(stuck, camera.rng))
    raised = only(camera.events, HealthKind.FROZEN, Transition.RAISED)
    assert 0 < raised.values["changed_fraction"] < 0.01
    assert camera.kinds() == [HealthKind.FROZEN]


def test_infrared_night_softer_and_brighter_raises_nothing() -> None:
    camera = Camera()
    for _ in range(2):  # two days and nights: the night view is learnt once, then kept
        camera.live(60, view())
        camera.run(120, lambda _: infrared(view(), camera.rng))
    camera.live(60, view())
    assert camera.events == []


def test_control_the_same_soft_night_in_colour_is_defocus() -> None:
    camera = Camera()
    camera.live(60, view())
    camera.run(120, lambda _: infrared(view(), camera.rng, tint=30))
    assert HealthKind.DEFOCUSED in camera.kinds(Transition.RAISED)


def test_a_camera_knocked_by_day_is_still_moved_at_night() -> None:
    camera = Camera()
    camera.live(60, view())
    camera.run(60, lambda _: infrared(view(), camera.rng))  # the night view is learnt
    camera.live(60, view())
    camera.live(30, view(dx=100, dy=30))  # knocked
    assert camera.kinds() == [HealthKind.MOVED]
    camera.run(120, lambda _: infrared(view(dx=100, dy=30), camera.rng))
    assert camera.kinds() == [HealthKind.MOVED]  # not cleared by the night
    assert HealthKind.MOVED in camera.health.active


def test_a_first_night_after_a_knock_learns_nothing_until_it_is_put_back() -> None:
    camera = Camera()
    camera.live(60, view())
    camera.live(30, view(dx=100, dy=30))
    camera.run(120, lambda _: infrared(view(dx=100, dy=30), camera.rng))
    assert camera.kinds() == [HealthKind.MOVED]  # the moved night view is not the normal one
    camera.live(30, view())  # put back by day
    assert camera.kinds() == [HealthKind.MOVED, HealthKind.MOVED]
    assert camera.events[-1].transition is Transition.CLEARED


def ptz_tour(camera: Camera) -> None:
    """Installed view, a slew nobody announced, then a zoomed-in preset."""
    camera.live(60, view())
    camera.run(8, lambda i: noisy(view(dx=12 * i, dy=4 * i), camera.rng))
    camera.live(120, zoomed(view(dx=96, dy=32)))


def test_a_ptz_camera_moving_on_its_own_raises_nothing_and_still_sees_blur() -> None:
    camera = Camera(HealthConfig(ptz=True))
    ptz_tour(camera)
    assert camera.events == []
    # The preset's own (softer) sharpness is the baseline now: a real blur is still seen.
    camera.live(60, blurred(zoomed(view(dx=96, dy=32)), sigma=6.0))
    assert camera.kinds() == [HealthKind.DEFOCUSED]


def test_control_the_same_tour_on_a_fixed_camera_is_a_move() -> None:
    camera = Camera()
    ptz_tour(camera)
    assert HealthKind.MOVED in camera.kinds(Transition.RAISED)
