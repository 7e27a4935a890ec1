"""Motion first (issue 14, item 2): which frames of a live source the object detector sees, and
where.

Per frame, on the source's processing thread (never the event loop: this is CPU work):

- ``detect_every_frame``: the whole frame, every frame, and no motion detection at all (the
  yardstick the gated cost is compared with, or a scene that is never still);
- motion (``MotionDetector``, with the source's masks and sensitivity): the detector runs on the
  planned regions (``plan_regions``: crops at full resolution around small motion, the whole
  frame around large or spread-out motion);
- no motion: nothing is detected, except a **refresh** of the whole frame every ``refresh_s``
  while objects are tracked, so that a track outlives a still scene (``refresh_s`` is below the
  tracker's ``track_lost_s``) and an object that left without moving anything we saw is let go;
  and while the background is being (re)learnt (at start, after the lights change), when motion
  cannot be told, at the same slow rate.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from detector_service.backends.base import Image
from detector_service.batcher import InferenceBatcher
from detector_service.detections import Detections
from detector_service.motion import Box, MotionConfig, MotionDetector
from detector_service.regions import Region, plan_regions
from detector_service.settings import DetectorSettings
from detector_service.tracking import ObjectTracker
from vigil.core.errors import InvalidInput
from vigil.detector.v1 import detector_service_pb2 as pb

# Seconds a frame's detection may take before it counts as failed (as InferenceBatcher.detect).
DETECT_TIMEOUT_S = 30.0
MAX_MASKS = 32
MAX_MASK_POINTS = 64
# Grey levels a pixel must change by at sensitivity 0 (just above nothing) and at 1 (the most).
THRESHOLD_AT_0, THRESHOLD_AT_1 = 45.0, 5.0


def validate_motion(motion: pb.MotionSettings) -> None:
    """Refuse settings a gate cannot use, naming the field (INVALID_ARGUMENT)."""
    if not math.isfinite(motion.sensitivity) or not 0 <= motion.sensitivity <= 1:
        raise InvalidInput(
            "motion.sensitivity must be between 0 (the service default) and 1",
            field="motion.sensitivity",
        )
    if len(motion.masks) > MAX_MASKS:
        raise InvalidInput(f"motion.masks: at most {MAX_MASKS} masks", field="motion.masks")
    for n, polygon in enumerate(motion.masks):
        where = f"motion.masks[{n}]"
        if not 3 <= len(polygon.points) <= MAX_MASK_POINTS:
            raise InvalidInput(
                f"{where} needs 3 to {MAX_MASK_POINTS} points, got {len(polygon.points)}",
                field=where,
            )
        for point in polygon.points:
            if not (0 <= point.x <= 1 and 0 <= point.y <= 1):  # NaN fails both comparisons
                raise InvalidInput(
                    f"{where}: points are normalised, x and y within 0..1, got "
                    f"({point.x:g}, {point.y:g})",
                    field=where,
                )


MOTION_KEYS = {"detect_every_frame", "sensitivity", "masks"}


def motion_from_table(table: Any, where: str) -> pb.MotionSettings:
    """Motion settings from a sources file's ``[sources.motion]`` table (checked by
    ``validate_motion`` with the rest of the spec)::

        [sources.motion]
        sensitivity = 0.6              # optional: 0..1, higher sees smaller changes; 0 default
        detect_every_frame = false     # optional: true detects on every frame, ungated
        masks = [[[0.8, 0.0], [1.0, 0.0], [1.0, 0.1], [0.8, 0.1]]]   # optional: ignored areas
    """
    if not isinstance(table, dict) or set(table) - MOTION_KEYS:
        raise InvalidInput(f"{where}: motion is a table of {sorted(MOTION_KEYS)}")
    try:
        return pb.MotionSettings(
            detect_every_frame=table.get("detect_every_frame", False),
            sensitivity=table.get("sensitivity", 0.0),
            masks=[
                pb.Polygon(points=[pb.Point(x=x, y=y) for x, y in mask])
                for mask in table.get("masks", [])
            ],
        )
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{where}: motion: {exc}") from None


def motion_config(motion: pb.MotionSettings, default_sensitivity: float) -> MotionConfig:
    """The motion detector's tuning for a source's settings (sensitivity 0: the default)."""
    sensitivity = motion.sensitivity or default_sensitivity
    threshold = THRESHOLD_AT_0 + (THRESHOLD_AT_1 - THRESHOLD_AT_0) * sensitivity
    masks = tuple(tuple((p.x, p.y) for p in polygon.points) for polygon in motion.masks)
    return MotionConfig(threshold=round(threshold), masks=masks)


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do with one frame: detect on ``regions`` (none: skip it)."""

    regions: list[Region]
    #: The motion detector saw something move in this frame.
    motion: bool = False

    @property
    def whole_frame(self) -> bool:
        return any(r.whole_frame for r in self.regions)


class MotionGate:
    """One source's gate; not thread-safe (its processing thread alone calls it)."""

    def __init__(
        self,
        motion: pb.MotionSettings,
        *,
        default_sensitivity: float,
        every_frame_default: bool,
        refresh_s: float,
        region_size: int,
    ) -> None:
        self.every_frame = motion.detect_every_frame or every_frame_default
        self.detector = MotionDetector(motion_config(motion, default_sensitivity))
        self.refresh_ns = int(refresh_s * 1e9)
        self.region_size = region_size
        self._last_whole_ns: int | None = None

    @classmethod
    def for_source(cls, spec: pb.SourceSpec, settings: DetectorSettings) -> MotionGate:
        """A source's gate: its spec's motion settings over the service's defaults.

        Only an always-on source is gated: it is what runs with nobody looking, at every
        camera, all the time. An on-demand one is played for the viewer who asked for it and
        keeps the seed's behaviour, every frame detected (its frames, a file's included, are
        what that viewer came for).
        """
        every_frame = settings.motion_detect_every_frame or spec.mode != pb.SOURCE_MODE_ALWAYS
        return cls(
            spec.motion,
            default_sensitivity=settings.motion_sensitivity,
            every_frame_default=every_frame,
            refresh_s=settings.motion_refresh_s,
            region_size=settings.motion_region_size,
        )

    def plan(self, image: Image, time_ns: int, tracking: bool) -> Plan:
        """The regions to detect on in ``image`` (captured at ``time_ns``)."""
        height, width = image.shape[:2]
        whole = [Region(Box(0, 0, width, height), whole_frame=True)]
        if self.every_frame:
            return Plan(whole)
        result = self.detector.update(image)
        regions = plan_regions(result.boxes, (width, height), model_input=self.region_size)
        if not regions:
            refresh = self._refresh_due(time_ns, tracking or result.calibrating)
        else:
            # Motion in one corner must not starve the refresh of an object tracked elsewhere.
            refresh = not regions[0].whole_frame and self._refresh_due(time_ns, tracking)
        if refresh:
            regions = whole
        if any(r.whole_frame for r in regions):
            self._last_whole_ns = time_ns
        return Plan(regions, motion=result.motion)

    def _refresh_due(self, time_ns: int, wanted: bool) -> bool:
        if self._last_whole_ns is None:
            return True  # the first frame: whatever is already in view is found at once
        return wanted and time_ns - self._last_whole_ns >= self.refresh_ns


class GatedDetector:
    """One live source's detection: gate, model, tracker. Its processing thread alone calls it."""

    def __init__(
        self, spec: pb.SourceSpec, settings: DetectorSettings, batcher: InferenceBatcher
    ) -> None:
        self.settings = settings
        self.batcher = batcher
        self.gate = MotionGate.for_source(spec, settings)
        self.tracker = ObjectTracker(settings.track_lost_s)
        # The tracked objects of the last detected frame, with their ids.
        self.held: Detections | None = None
        #: Whether something moved in the last frame; None when frames are not judged for motion
        #: (every frame is detected), as watch rules read it.
        self.motion: bool | None = None

    def configure(self, spec: pb.SourceSpec) -> None:
        """Take a new spec's motion settings (UpdateSource); tracks and held boxes stay. The
        processing thread picks the new gate up with its next frame."""
        self.gate = MotionGate.for_source(spec, self.settings)

    def process(
        self, image: Image, time_ns: int, counters: pb.SourceCounters
    ) -> tuple[Detections, float]:
        """The frame's boxes (whole-frame coordinates, track ids) and the model time it took in
        ms (0: the model did not run on it); counts the frame in ``counters``."""
        plan = self.gate.plan(image, time_ns, tracking=bool(self.held))
        counters.frames_with_motion += plan.motion
        self.motion = None if self.gate.every_frame else plan.motion
        if not plan.regions:
            # Nothing moved since the last detection: its tracked objects are where they were,
            # so the frame shows them (viewers see no boxes blink off between detections, and
            # a weapon lying still keeps its incident open) without running the model.
            # Untracked boxes (a single sighting, maybe spurious) are not carried, so one false
            # detection is not repeated on every still frame.
            counters.frames_skipped += 1
            return self.held or Detections.empty(""), 0.0
        counters.frames_detected += 1
        found, inference_ms = detect_regions(self.batcher, image, plan.regions)
        found = found.filter(
            allow=self.settings.class_allow, thresholds=self.settings.class_thresholds
        )
        if not plan.whole_frame and self.held:
            # Only the regions were looked at; what was tracked elsewhere did not move.
            found = joined(found, outside(self.held, plan.regions))
        # The tracker sees detected frames only, whole-frame boxes, at their capture time.
        found = self.tracker.update(found, time_ns)
        self.held = tracked(found)
        # A model time of exactly 0 would read as "not detected": a frame that ran has some.
        return found, max(inference_ms, 1e-6)


def detect_regions(
    batcher: InferenceBatcher, image: Image, regions: Sequence[Region]
) -> tuple[Detections, float]:
    """``regions`` of ``image`` through the model, together (one batch when they fit), as one
    set of boxes in frame coordinates, with the model time they took in ms."""
    futures = [
        # A crop is a view into the frame; the backends want contiguous pixels.
        batcher.submit(image if r.whole_frame else np.ascontiguousarray(r.crop(image)))
        for r in regions
    ]
    results = [future.result(DETECT_TIMEOUT_S) for future in futures]
    parts = [r.detections_to_frame(d) for r, (d, _) in zip(regions, results, strict=True)]
    inference_ms = sum(ms for _, ms in results)
    if len(parts) == 1:
        return parts[0], inference_ms
    return functools.reduce(joined, parts), inference_ms


def tracked(found: Detections) -> Detections:
    """The boxes a track has claimed (those that are held while the scene is still)."""
    if found.track_id is None:
        return found.select(np.zeros(len(found), bool))
    return found.select(found.track_id >= 0)


def outside(held: Detections, regions: Sequence[Region]) -> Detections:
    """The held boxes whose centre lies in none of ``regions``: nothing moved there since they
    were detected, so they still stand (the regions were looked at again; the rest was not)."""
    if not len(held):
        return held
    cx = (held.xyxy[:, 0] + held.xyxy[:, 2]) / 2
    cy = (held.xyxy[:, 1] + held.xyxy[:, 3]) / 2
    keep = np.ones(len(held), bool)
    for region in regions:
        b = region.box
        keep &= ~((cx >= b.x1) & (cx < b.x2) & (cy >= b.y1) & (cy < b.y2))
    return held.select(keep)


def joined(first: Detections, second: Detections) -> Detections:
    """Two sets of boxes of one frame as one (track ids dropped: the tracker sets them again)."""
    if not len(second):
        return dataclasses.replace(first, track_id=None)
    return Detections(
        xyxy=np.concatenate([first.xyxy, second.xyxy]).astype(np.float32),
        confidence=np.concatenate([first.confidence, second.confidence]).astype(np.float32),
        class_id=np.concatenate([first.class_id, second.class_id]).astype(np.int32),
        class_name=first.class_name + second.class_name,
        model=first.model,
    )
