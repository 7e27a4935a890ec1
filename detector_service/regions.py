"""Where to run the object detector, given the motion boxes of a frame.

A detector such as YOLO shrinks whatever it is given to its input size (416×416 for our
YOLOv3-tiny). Given a whole 1280×720 frame, a person 40 px tall shrinks to 13 px and is missed;
given a 416×416 crop around the motion at full resolution, the same person keeps all 40 px. So:

- motion boxes close to each other are **merged** (one person's head and legs, two people
  walking together), so one crop covers them;
- each group is **padded** (an object is usually larger than the part of it that moved) and
  grown to a **square of at least the model's input**, cut at full resolution, so small
  objects are seen pixel for pixel and nothing is upscaled;
- squares that overlap are merged again, so no pixel is detected twice;
- when motion is large or spread out (a crop would not fit the frame, the crops would cover
  more than ``whole_frame_fraction`` of it, or there would be more than ``max_regions``), one
  whole-frame region is cheaper and just as good: the detector then runs once, as it does today.

Detections come back in the crop's pixels; :meth:`Region.to_frame` and
:meth:`Region.detections_to_frame` put them back into the frame's coordinates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from detector_service.backends.base import Image
from detector_service.detections import Detections
from detector_service.motion import Box

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Region:
    """A part of the frame to run the detector on, in full-resolution pixels."""

    box: Box
    #: True when this region is the whole frame (motion was large or spread out).
    whole_frame: bool = False

    def crop(self, frame: Image) -> Image:
        """The region's pixels: a view into ``frame``, not a copy."""
        b = self.box
        return frame[b.y1 : b.y2, b.x1 : b.x2]

    def to_frame(self, xyxy: npt.ArrayLike) -> FloatArray:
        """Boxes ``(N, 4)`` in the crop's pixels → the same boxes in the frame's pixels."""
        boxes = np.asarray(xyxy, np.float32).reshape(-1, 4)
        offset = np.array([self.box.x1, self.box.y1] * 2, np.float32)
        return boxes + offset

    def from_frame(self, xyxy: npt.ArrayLike) -> FloatArray:
        """Boxes ``(N, 4)`` in the frame's pixels → the same boxes in the crop's pixels."""
        boxes = np.asarray(xyxy, np.float32).reshape(-1, 4)
        offset = np.array([self.box.x1, self.box.y1] * 2, np.float32)
        return boxes - offset

    def detections_to_frame(self, detections: Detections) -> Detections:
        """The detector's result on :meth:`crop` with its boxes moved into frame coordinates."""
        return dataclasses.replace(detections, xyxy=self.to_frame(detections.xyxy))


def plan_regions(
    boxes: Sequence[Box],
    frame_size: tuple[int, int],
    *,
    model_input: int = 416,
    padding: float = 0.25,
    merge_distance: int | None = None,
    max_regions: int = 4,
    whole_frame_fraction: float = 0.5,
) -> list[Region]:
    """Regions for the detector to look at, given a frame's motion boxes.

    ``frame_size`` is ``(width, height)``. ``padding`` grows each merged group by that fraction
    of its size on every side; ``merge_distance`` (pixels; default a quarter of
    ``model_input``) joins boxes whose edges are that close. Returns ``[]`` without motion.
    """
    width, height = frame_size
    if width < 1 or height < 1:
        raise ValueError(f"frame_size must be positive, got {frame_size}")
    if model_input < 1 or padding < 0 or max_regions < 1 or not 0 < whole_frame_fraction <= 1:
        raise ValueError("model_input and max_regions must be ≥ 1, padding ≥ 0, fraction in (0, 1]")
    if not boxes:
        return []
    distance = model_input // 4 if merge_distance is None else merge_distance
    whole = [Region(Box(0, 0, width, height), whole_frame=True)]

    groups = _merge_close(list(boxes), distance)
    while True:
        squares = [_square(g, width, height, model_input, padding) for g in groups]
        if any(s is None for s in squares):
            return whole  # a group too large for any square crop of this frame
        placed = [s for s in squares if s is not None]
        pair = _overlapping_pair(placed)
        if pair is None:
            break
        i, j = pair
        groups[i] = groups[i].union(groups[j])
        del groups[j]

    if len(placed) > max_regions:
        return whole
    if sum(s.area for s in placed) > whole_frame_fraction * width * height:
        return whole
    return [Region(s) for s in placed]


def _merge_close(boxes: list[Box], distance: int) -> list[Box]:
    """Union boxes whose edges are within ``distance`` pixels, until no two are that close."""
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                if boxes[i].gap(boxes[j]) <= distance:
                    boxes[i] = boxes[i].union(boxes[j])
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return boxes


def _square(group: Box, width: int, height: int, model_input: int, padding: float) -> Box | None:
    """The padded square crop around ``group``, inside the frame; None if none fits."""
    side = max(round(max(group.width, group.height) * (1 + 2 * padding)), model_input)
    if side > min(width, height):
        return None
    # Centre on the group, then slide inward where the square would leave the frame.
    cx, cy = (group.x1 + group.x2) / 2, (group.y1 + group.y2) / 2
    x1 = min(max(round(cx - side / 2), 0), width - side)
    y1 = min(max(round(cy - side / 2), 0), height - side)
    return Box(x1, y1, x1 + side, y1 + side)


def _overlapping_pair(squares: Sequence[Box]) -> tuple[int, int] | None:
    for i in range(len(squares)):
        for j in range(i + 1, len(squares)):
            a, b = squares[i], squares[j]
            if a.x1 < b.x2 and b.x1 < a.x2 and a.y1 < b.y2 and b.y1 < a.y2:
                return i, j
    return None
