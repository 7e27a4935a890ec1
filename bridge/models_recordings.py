"""The JSON shapes of a source's recording: coverage and the detections stored with it
(``TimeRange`` stays in ``bridge.models``, where incidents use it too)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from bridge.models import TimeRange, copied, detection, iso, mirrors
from vigil import sdk


@mirrors(sdk.Coverage, converted={"ranges"})
class Coverage(BaseModel):
    """What a source's recording covers, oldest first (a gap between two ranges); the last
    range is open-ended while the source is recording. ``bytes``: recording kept."""

    ranges: list[TimeRange]
    bytes: int

    @classmethod
    def from_sdk(cls, c: sdk.Coverage) -> Coverage:
        return copied(cls, c, ranges=[TimeRange.from_proto(r) for r in c.proto.ranges])


@mirrors(sdk.FrameDetections, converted={"at", "detections"})
class FrameDetections(BaseModel):
    """The objects found on one detected frame (``at``: its capture time, ISO 8601 UTC), in
    pixels of a ``width`` x ``height`` frame; empty where the objects before are gone."""

    at: str | None
    width: int
    height: int
    detections: list[dict[str, Any]]

    @classmethod
    def from_sdk(cls, f: sdk.FrameDetections) -> FrameDetections:
        return copied(
            cls,
            f,
            at=iso(f.proto.capture_time),
            detections=[detection(d) for d in f.detections],
        )


@mirrors(sdk.RecordedDetections, converted={"frames"})
class RecordedDetections(BaseModel):
    """The detected frames of a range of a recording, oldest first: a player draws the boxes
    of the newest one at or before the picture it shows."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"frames": [
                {"at": "2025-01-01T12:00:00.066000Z", "width": 1280, "height": 720,
                 "detections": [{"class_name": "knife", "class_id": 43, "confidence": 0.81,
                                 "box": {"x_min": 400, "y_min": 210, "x_max": 520, "y_max": 330},
                                 "is_weapon": True, "model": "yolo", "track_id": 3}]},
                {"at": "2025-01-01T12:00:04.200000Z", "width": 1280, "height": 720,
                 "detections": []},
            ]}]
        }
    )  # fmt: skip
    frames: list[FrameDetections]

    @classmethod
    def from_sdk(cls, r: sdk.RecordedDetections) -> RecordedDetections:
        return cls(frames=[FrameDetections.from_sdk(f) for f in r.frames])
