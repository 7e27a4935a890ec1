"""A cheap motion detector that decides when (and where) the object detector has to run.

Issue 14, item 2 ("motion first"): an always-on camera mostly shows a static scene, and running
the object detector on every frame of every camera is what makes an NVR expensive. This module
tells, for a few milliseconds per frame, whether anything moved and where.

How it works, per frame:

1. **Downscale and grey.** The frame is shrunk to ``frame_height`` rows (180 by default) by
   halvings that average 2×2 blocks, then area interpolation for the rest, which also averages
   away most sensor noise, then turned grey. Everything
   after this step costs the same for a 720p and a 4K camera.
2. **Blur** (a small Gaussian) so that single noisy pixels and compression speckle do not count.
3. **Compare with a background model.** We keep a *running average* of past frames
   (``cv2.accumulateWeighted`` with ``learning_rate``) rather than OpenCV's MOG2: the average is
   one float buffer and one multiply-add per pixel, several times cheaper than MOG2's per-pixel
   Gaussian mixtures; its behaviour is one number that is easy to reason about (a change fades
   into the background after roughly ``1 / learning_rate`` frames); and recalibrating is just
   copying the current frame into it. MOG2's strength, multi-modal backgrounds such as a tree
   swaying, is what masks are for here. Frigate's current detector made the same choice.
4. **Exposure compensation.** The frame is given the background's mean and contrast (one gain
   and one offset) before comparing: when auto-exposure or a cloud makes the whole picture a
   little darker or brighter, every pixel moves together and nothing is reported; a moving
   object is a few percent of the picture and barely moves the mean.
5. **Threshold** the absolute difference at ``threshold`` grey levels (the sensitivity: lower
   sees fainter motion), zero the masked areas (normalised polygons: a clock overlay, a tree),
   **dilate** so the parts of one moving body join, and take the **contours**: each contour
   whose area passes ``min_area`` becomes a box, scaled back to full-resolution pixels.
6. **Global-change guard.** When more than ``global_change_fraction`` of the (unmasked) picture
   differs from the background before compensation, that is the lights going on or off, an
   infrared switch, or the camera being moved, not an object: the background is reset to the
   current frame and the detector reports ``calibrating`` with no boxes until the picture
   settles (it learns fast meanwhile).

``plan_regions`` in :mod:`detector_service.regions` turns the boxes into crops for the detector.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from detector_service.backends.base import Image

# Grey-level deviation below which a picture counts as flat (no contrast to match), and the
# largest contrast change exposure compensation undoes (auto-exposure steps are well within it).
MIN_TEXTURE_STD = 8.0
MAX_GAIN = 1.5

#: A polygon in normalised coordinates: (x, y) pairs with 0..1 spanning the frame's width/height.
Polygon = Sequence[tuple[float, float]]


@dataclass(frozen=True, slots=True)
class Box:
    """An axis-aligned box in full-resolution pixels; ``x2``/``y2`` are exclusive."""

    x1: int
    y1: int
    x2: int
    y2: int

    @property
    def width(self) -> int:
        return self.x2 - self.x1

    @property
    def height(self) -> int:
        return self.y2 - self.y1

    @property
    def area(self) -> int:
        return self.width * self.height

    def union(self, other: Box) -> Box:
        return Box(
            min(self.x1, other.x1),
            min(self.y1, other.y1),
            max(self.x2, other.x2),
            max(self.y2, other.y2),
        )

    def gap(self, other: Box) -> int:
        """The distance between the two boxes' edges in pixels (0 when they touch or overlap)."""
        dx = max(other.x1 - self.x2, self.x1 - other.x2, 0)
        dy = max(other.y1 - self.y2, self.y1 - other.y2, 0)
        return max(dx, dy)


@dataclass(frozen=True, slots=True)
class MotionConfig:
    """Tuning of :class:`MotionDetector`; the defaults suit 720p–4K security cameras at 5–15 fps."""

    #: Rows of the downscaled grey frame the detector works on.
    frame_height: int = 180
    #: Grey levels (0–255) a pixel must differ from the background to count as changed.
    threshold: int = 25
    #: How fast the background follows the scene: a parked car fades in after ~1/rate frames.
    learning_rate: float = 0.02
    #: The faster rate used while calibrating (at start and after a global change).
    calibration_rate: float = 0.3
    #: Smallest moving area reported, as a fraction of the frame (0.0005 is 29 px at 320×180).
    min_area: float = 0.0005
    #: Gaussian blur kernel size (odd) applied to the small frame.
    blur_kernel: int = 5
    #: Dilation passes (3×3) that join the parts of one moving body.
    dilate_iterations: int = 2
    #: A change over more than this fraction of the picture is global: recalibrate, report none.
    global_change_fraction: float = 0.5
    #: Calibration ends once less than this fraction of the picture differs from the background.
    settled_fraction: float = 0.02
    #: Calibration ends after this many frames at the latest (a scene that never settles).
    max_calibration_frames: int = 30
    #: Subtract the median frame/background difference first (absorbs exposure drifts).
    exposure_compensation: bool = True
    #: Areas to ignore, each a polygon in normalised 0..1 coordinates.
    masks: tuple[tuple[tuple[float, float], ...], ...] = ()

    def __post_init__(self) -> None:
        if self.frame_height < 16:
            raise ValueError(f"frame_height must be at least 16, got {self.frame_height}")
        if not 0 < self.threshold < 256:
            raise ValueError(f"threshold must be within 1..255, got {self.threshold}")
        for name in ("learning_rate", "calibration_rate", "global_change_fraction"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ValueError(f"{name} must be within (0, 1], got {value}")
        if not 0 <= self.min_area < 1 or not 0 <= self.settled_fraction < 1:
            raise ValueError("min_area and settled_fraction must be within [0, 1)")
        if self.blur_kernel < 1 or self.blur_kernel % 2 == 0:
            raise ValueError(f"blur_kernel must be odd and positive, got {self.blur_kernel}")
        if self.max_calibration_frames < 1:
            raise ValueError("max_calibration_frames must be at least 1")
        if self.dilate_iterations < 0:
            raise ValueError("dilate_iterations must not be negative")
        for polygon in self.masks:
            if len(polygon) < 3:
                raise ValueError(f"a mask polygon needs at least 3 points, got {polygon!r}")
            if any(not (0 <= x <= 1 and 0 <= y <= 1) for x, y in polygon):
                raise ValueError(f"mask points must be normalised to 0..1, got {polygon!r}")


@dataclass(frozen=True, slots=True)
class MotionResult:
    """What one frame showed: motion boxes (full-resolution pixels) and how much changed."""

    boxes: tuple[Box, ...]
    #: Fraction of the unmasked picture that differs from the background (before dilation).
    changed_fraction: float
    #: True while the background is being (re)learnt; boxes are then always empty.
    calibrating: bool
    #: True when this frame tripped the global-change guard.
    global_change: bool = False

    @property
    def motion(self) -> bool:
        return bool(self.boxes)


def validate_frame(frame: object) -> Image:
    """Return ``frame`` as a BGR image or raise ``ValueError`` saying what is wrong with it."""
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"a frame must be a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"a frame must be uint8 HxWx3 (BGR), got {frame.dtype} {frame.shape}")
    if frame.shape[0] < 2 or frame.shape[1] < 2:
        raise ValueError(f"a frame must be at least 2×2 pixels, got {frame.shape[:2]}")
    return frame


def rasterise_masks(
    masks: Sequence[Polygon], width: int, height: int
) -> npt.NDArray[np.uint8] | None:
    """A ``height``×``width`` image that is 0 inside any mask and 255 elsewhere (None: no mask)."""
    if not masks:
        return None
    keep = np.full((height, width), 255, np.uint8)
    for polygon in masks:
        points = np.array([[x * width, y * height] for x, y in polygon], np.float32)
        cv2.fillPoly(keep, [np.round(points).astype(np.int32)], 0)
    return keep


@dataclass(slots=True)
class _State:
    """What the detector learnt about one frame geometry; rebuilt when the geometry changes."""

    shape: tuple[int, int]
    small_size: tuple[int, int]  # (width, height) of the working frame
    keep: npt.NDArray[np.uint8] | None
    kept_pixels: int
    background: npt.NDArray[np.float32] | None = None
    calibrating: bool = True
    calibration_frames: int = 0


class MotionDetector:
    """Feed it every frame of one camera, in order; it keeps that camera's background model.

    Not thread-safe: one detector per camera, called from that camera's processing thread.
    """

    def __init__(self, config: MotionConfig | None = None) -> None:
        self.config = config or MotionConfig()
        self._state: _State | None = None
        self._kernel = np.ones((3, 3), np.uint8)

    @property
    def calibrating(self) -> bool:
        return self._state is None or self._state.calibrating

    def reset(self) -> None:
        """Forget the background, for example after a reconnect or a PTZ move."""
        self._state = None

    def update(self, frame: Image) -> MotionResult:
        frame = validate_frame(frame)
        state = self._state_for(frame)
        small = self._prepare(frame, state.small_size)
        if state.background is None:
            state.background = small.astype(np.float32)
            return MotionResult((), 0.0, calibrating=True)

        current = small.astype(np.float32)
        raw_fraction = self._changed_fraction(np.abs(current - state.background), state)[1]
        if raw_fraction > self.config.global_change_fraction:
            # Lights, an IR switch or a moved camera: start the background again from here.
            state.background = current
            state.calibrating, state.calibration_frames = True, 0
            return MotionResult((), raw_fraction, calibrating=True, global_change=True)

        if self.config.exposure_compensation:
            current = self._match_exposure(current, state)
        changed, changed_fraction = self._changed_fraction(
            np.abs(current - state.background), state
        )

        if state.calibrating:
            state.calibration_frames += 1
            if (
                changed_fraction <= self.config.settled_fraction
                or state.calibration_frames >= self.config.max_calibration_frames
            ):
                state.calibrating = False
            cv2.accumulateWeighted(small, state.background, self.config.calibration_rate)
            return MotionResult((), changed_fraction, calibrating=True)

        boxes = self._boxes(changed, state, frame.shape[1], frame.shape[0])
        # The whole picture keeps learning, moving objects included: at the default rate a
        # passer-by barely marks the background, and an object that stops (a parked car)
        # becomes background within a few hundred frames instead of being reported forever.
        cv2.accumulateWeighted(small, state.background, self.config.learning_rate)
        return MotionResult(boxes, changed_fraction, calibrating=False)

    def _changed_fraction(
        self, difference: npt.NDArray[np.float32], state: _State
    ) -> tuple[npt.NDArray[np.uint8], float]:
        changed = (difference >= self.config.threshold).astype(np.uint8) * 255
        if state.keep is not None:
            changed &= state.keep
        return changed, cv2.countNonZero(changed) / state.kept_pixels

    def _match_exposure(
        self, current: npt.NDArray[np.float32], state: _State
    ) -> npt.NDArray[np.float32]:
        """``current`` with the background's mean and contrast (gain and offset of exposure)."""
        assert state.background is not None
        mean_c, std_c = (float(v[0][0]) for v in cv2.meanStdDev(current, mask=state.keep))
        mean_b, std_b = (float(v[0][0]) for v in cv2.meanStdDev(state.background, mask=state.keep))
        # Contrast is matched only between two textured pictures, and by a camera's exposure
        # steps at most: over a flat background (a black night scene, a bare wall) the ratio of
        # the deviations says nothing about exposure, and would shrink an object that appears
        # on it to nothing.
        textured = min(std_b, std_c) >= MIN_TEXTURE_STD
        gain = min(max(std_b / std_c, 1 / MAX_GAIN), MAX_GAIN) if textured else 1.0
        matched: npt.NDArray[np.float32] = (current - mean_c) * gain + mean_b
        return matched

    def _state_for(self, frame: Image) -> _State:
        shape = (frame.shape[0], frame.shape[1])
        if self._state is None or self._state.shape != shape:
            # A new stream geometry (first frame, or a reconnect at another resolution).
            height = min(self.config.frame_height, shape[0])
            width = max(1, round(shape[1] * height / shape[0]))
            keep = rasterise_masks(self.config.masks, width, height)
            kept = width * height if keep is None else cv2.countNonZero(keep)
            self._state = _State(shape, (width, height), keep, max(kept, 1))
        return self._state

    def _prepare(self, frame: Image, size: tuple[int, int]) -> npt.NDArray[np.uint8]:
        # Resize before the colour conversion: it then converts 1/16 of the pixels. Halving
        # with bilinear interpolation averages each 2×2 block, as area interpolation does, at a
        # seventh of its cost (0.3 ms against 2.4 ms from 720p on our CPUs: at 15 fps on every
        # camera, this was most of a still camera's motion cost); area finishes the odd rest.
        small = frame
        while small.shape[0] >= 2 * size[1] and small.shape[1] >= 2 * size[0]:
            half = (small.shape[1] // 2, small.shape[0] // 2)
            small = np.asarray(cv2.resize(small, half, interpolation=cv2.INTER_LINEAR), np.uint8)
        if (small.shape[1], small.shape[0]) != size:
            small = np.asarray(cv2.resize(small, size, interpolation=cv2.INTER_AREA), np.uint8)
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        k = self.config.blur_kernel
        blurred = cv2.GaussianBlur(grey, (k, k), 0) if k > 1 else grey
        return np.asarray(blurred, np.uint8)  # no copy: it is uint8; this tells the type checker

    def _boxes(
        self, changed: npt.NDArray[np.uint8], state: _State, width: int, height: int
    ) -> tuple[Box, ...]:
        joined = changed
        if self.config.dilate_iterations:
            iterations = self.config.dilate_iterations
            joined = np.asarray(cv2.dilate(changed, self._kernel, iterations=iterations), np.uint8)
        contours, _ = cv2.findContours(joined, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        small_w, small_h = state.small_size
        min_area = self.config.min_area * small_w * small_h
        sx, sy = width / small_w, height / small_h
        boxes = []
        for contour in contours:
            if cv2.contourArea(contour) < min_area:
                continue
            x, y, w, h = cv2.boundingRect(contour)
            boxes.append(
                Box(
                    max(0, int(x * sx)),
                    max(0, int(y * sy)),
                    min(width, int(np.ceil((x + w) * sx))),
                    min(height, int(np.ceil((y + h) * sy))),
                )
            )
        boxes.sort(key=lambda b: (b.y1, b.x1))
        return tuple(boxes)
