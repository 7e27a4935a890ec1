"""Motion first: a cheap test of whether a frame is worth the object detector's time, and where.

An always-on camera mostly looks at a still scene. Running the detector on every frame of every
camera would spend nearly all of a small box's CPU on nothing, so each frame is first compared
with a learnt background at a tiny size:

1. shrink to ``frame_height`` rows (180 by default: a 1280×720 frame becomes 320×180, 1/16 of the
   pixels) and convert to grey; blur away sensor noise and compression blocks;
2. compare with a running-average background (``cv2.accumulateWeighted``). A running average
   rather than MOG2: one float image, no per-pixel mixture, a few hundred microseconds a frame,
   and it forgives the slow light changes of a day;
3. threshold the difference (``threshold``: the sensitivity), drop the masked areas (a clock
   overlay, a tree), dilate, and keep the contours larger than ``min_area``: their boxes, scaled
   back to the full frame, are the motion.

Two guards keep the background honest. When most of the frame changes at once (lights switched,
the camera's infrared mode, auto-exposure) that is not motion: the detector recalibrates, learning
the new scene quickly and reporting nothing until it has settled. And a change that stays (a car
that parks) is learnt into the background after ``settle_frames`` so it stops being motion.

``plan_regions`` then turns motion boxes into the regions the object detector looks at: small
motion gets a crop around it at full resolution (a person far away keeps their pixels instead of
being shrunk with the whole frame to the model's input), large or scattered motion gets the whole
frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import cv2
import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]
# (x1, y1, x2, y2) in full-frame pixels, x2 and y2 exclusive.
Box = tuple[int, int, int, int]
# A polygon in normalised coordinates: (x, y) pairs in 0..1 of the frame's width and height.
Polygon = Sequence[tuple[float, float]]
_DILATE = np.ones((3, 3), np.uint8)


@dataclass(frozen=True)
class MotionConfig:
    # Rows of the small grey frame the comparison runs on.
    frame_height: int = 180
    # Grey levels (0-255) a pixel must differ from the background by to count: lower is more
    # sensitive (and more easily fooled by noise, rain, compression).
    threshold: int = 25
    # Smallest motion that counts, as a fraction of the frame's area.
    min_area: float = 0.0004
    # How fast the background follows the scene, per frame; faster while calibrating.
    alpha: float = 0.02
    calibrate_alpha: float = 0.25
    # Above this fraction of the frame changing at once, it is the light, not motion.
    global_change: float = 0.7
    # Calibration ends once less than this fraction of the frame differs from the background.
    settled: float = 0.01
    # Motion seen in this many consecutive frames starts being learnt into the background.
    settle_frames: int = 15
    # Areas never to report motion in.
    masks: tuple[Polygon, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class MotionResult:
    boxes: tuple[Box, ...]
    # Fraction of the (unmasked) small frame that differs from the background.
    changed_fraction: float
    # True while the background is being (re)learnt: no motion is reported then.
    calibrating: bool

    @property
    def motion(self) -> bool:
        return bool(self.boxes)


class MotionDetector:
    """One camera's motion detector. Not thread-safe: one capture thread feeds it."""

    def __init__(self, config: MotionConfig | None = None) -> None:
        self.config = config or MotionConfig()
        self._shape: tuple[int, int] | None = None  # full frame (height, width)
        self._small: tuple[int, int] = (0, 0)  # small frame (width, height) for cv2
        self._background: npt.NDArray[np.float32] | None = None
        self._keep: Image | None = None  # 255 where motion counts, 0 in masks
        self._kept_pixels = 1
        self._calibrating = True
        self._motion_run = 0

    def reset(self) -> None:
        """Forget the background (a new stream, a moved camera): the next frames recalibrate."""
        self._shape = None
        self._background = None

    def update(self, frame: Image) -> MotionResult:
        height, width = frame.shape[:2]
        if self._shape != (height, width):
            self._start(height, width)
        small = self._prepare(frame)
        if self._background is None:
            # The first frame of a stream is the background: nothing to compare it with yet.
            self._background = small.astype(np.float32)
            return MotionResult((), 0.0, True)
        assert self._keep is not None
        delta = cv2.absdiff(small, cv2.convertScaleAbs(self._background))
        _, changed = cv2.threshold(delta, self.config.threshold, 255, cv2.THRESH_BINARY)
        changed = cast(Image, cv2.bitwise_and(changed, self._keep))
        fraction = cv2.countNonZero(changed) / self._kept_pixels

        if fraction > self.config.global_change:
            # The light changed (or the camera's mode): this frame is the new scene. Averaging
            # towards it would leave a residue that reads as motion for many frames.
            self._background = small.astype(np.float32)
            self._calibrating = True
            self._motion_run = 0
            return MotionResult((), fraction, True)
        if self._calibrating and fraction < self.config.settled:
            self._calibrating = False

        boxes: tuple[Box, ...] = ()
        if not self._calibrating:
            boxes = self._boxes(changed, height / self._small[1], width / self._small[0])
        self._motion_run = self._motion_run + 1 if boxes else 0
        # Learn the scene, but not a moving object passing through: only once it has stayed.
        if not boxes or self._motion_run >= self.config.settle_frames:
            alpha = self.config.calibrate_alpha if self._calibrating else self.config.alpha
            cv2.accumulateWeighted(small, self._background, alpha)
        return MotionResult(boxes, fraction, self._calibrating)

    def _start(self, height: int, width: int) -> None:
        rows = min(self.config.frame_height, height)
        cols = max(1, round(width * rows / height))
        self._shape = (height, width)
        self._small = (cols, rows)
        keep = np.full((rows, cols), 255, np.uint8)
        for polygon in self.config.masks:
            points = np.array([(x * cols, y * rows) for x, y in polygon], np.float32)
            cv2.fillPoly(keep, [np.round(points).astype(np.int32)], 0)
        self._keep = keep
        self._kept_pixels = max(1, cv2.countNonZero(keep))
        self._background = None
        self._calibrating = True
        self._motion_run = 0

    def _prepare(self, frame: Image) -> Image:
        # Shrinking first makes the colour conversion and blur work on 1/16 of the pixels.
        small = cv2.resize(frame, self._small, interpolation=cv2.INTER_AREA)
        if small.ndim == 3:
            small = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        return cast(Image, cv2.GaussianBlur(small, (5, 5), 0))

    def _boxes(self, changed: Image, scale_y: float, scale_x: float) -> tuple[Box, ...]:
        changed = cast(Image, cv2.dilate(changed, _DILATE, iterations=2))
        contours, _ = cv2.findContours(changed, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        min_area = self.config.min_area * self._small[0] * self._small[1]
        assert self._shape is not None
        height, width = self._shape
        boxes = []
        for contour in contours:
            if cv2.contourArea(contour) < min_area:
                continue
            x, y, w, h = cv2.boundingRect(contour)
            boxes.append(
                (
                    max(0, int(x * scale_x)),
                    max(0, int(y * scale_y)),
                    min(width, int(np.ceil((x + w) * scale_x))),
                    min(height, int(np.ceil((y + h) * scale_y))),
                )
            )
        return tuple(sorted(boxes))


@dataclass(frozen=True)
class Region:
    """A part of the frame the object detector looks at, in full-frame pixels."""

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

    def crop(self, frame: Image) -> Image:
        """The region's pixels (a view, no copy)."""
        return frame[self.y1 : self.y2, self.x1 : self.x2]

    def to_frame(self, xyxy: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Boxes found in the crop, moved to full-frame coordinates."""
        offset = np.array([self.x1, self.y1, self.x1, self.y1], np.float32)
        return (xyxy + offset).astype(np.float32)


def plan_regions(
    boxes: Sequence[Box],
    width: int,
    height: int,
    *,
    model_size: int = 416,
    padding: float = 0.2,
    max_regions: int = 4,
    whole_frame_above: float = 0.5,
) -> list[Region]:
    """Where to run the detector for these motion boxes: none without motion; square crops of at
    least ``model_size`` pixels around small motion (so the model sees it at full resolution);
    the whole frame when the crops would cover more than ``whole_frame_above`` of it or there
    would be more than ``max_regions`` of them."""
    if not boxes:
        return []
    whole = Region(0, 0, width, height)
    squares = [_square(box, width, height, model_size, padding) for box in boxes]
    if any(square is None for square in squares):
        return [whole]
    regions = _merge([s for s in squares if s is not None], width, height, model_size)
    if regions is None or len(regions) > max_regions:
        return [whole]
    if sum(r.width * r.height for r in regions) > whole_frame_above * width * height:
        return [whole]
    return regions


def _square(box: Box, width: int, height: int, model_size: int, padding: float) -> Region | None:
    """A square around ``box`` with padding, at least ``model_size`` wide, moved (not shrunk) to
    lie inside the frame; None when no such square fits in the frame."""
    x1, y1, x2, y2 = box
    side = max(model_size, round(max(x2 - x1, y2 - y1) * (1 + 2 * padding)))
    if side > min(width, height):
        return None
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left = int(min(max(0, round(cx - side / 2)), width - side))
    top = int(min(max(0, round(cy - side / 2)), height - side))
    return Region(left, top, left + side, top + side)


def _merge(regions: list[Region], width: int, height: int, model_size: int) -> list[Region] | None:
    """Overlapping squares become one square around both, until none overlap; None when a
    merged square no longer fits the frame."""
    merged = True
    while merged:
        merged = False
        for i, a in enumerate(regions):
            for b in regions[i + 1 :]:
                if a.x1 < b.x2 and b.x1 < a.x2 and a.y1 < b.y2 and b.y1 < a.y2:
                    union: Box = (
                        min(a.x1, b.x1),
                        min(a.y1, b.y1),
                        max(a.x2, b.x2),
                        max(a.y2, b.y2),
                    )
                    square = _square(union, width, height, model_size, 0.0)
                    if square is None:
                        return None
                    regions = [r for r in regions if r is not a and r is not b] + [square]
                    merged = True
                    break
            if merged:
                break
    return sorted(regions, key=lambda r: (r.y1, r.x1))
