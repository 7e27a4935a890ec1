"""Motion settings of a source: how motion gates its object detector."""

from __future__ import annotations

from dataclasses import dataclass

from vigil.detector.v1 import detector_service_pb2 as pb

Polygon = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class MotionSettings:
    """``detect_every_frame``: no gating (a scene never still, or a comparison). ``sensitivity``
    from 0 to 1, higher sees smaller changes as motion; 0 is the service's default. ``masks``:
    areas whose changes are ignored (a clock overlay, a tree), each at least three (x, y) points
    in normalised coordinates ((0, 0) top left, (1, 1) bottom right)."""

    detect_every_frame: bool = False
    sensitivity: float = 0.0
    masks: tuple[Polygon, ...] = ()

    @classmethod
    def from_proto(cls, m: pb.MotionSettings) -> MotionSettings:
        return cls(
            detect_every_frame=m.detect_every_frame,
            sensitivity=m.sensitivity,
            masks=tuple(tuple((p.x, p.y) for p in polygon.points) for polygon in m.masks),
        )

    def to_proto(self) -> pb.MotionSettings:
        return pb.MotionSettings(
            detect_every_frame=self.detect_every_frame,
            sensitivity=self.sensitivity,
            masks=[
                pb.Polygon(points=[pb.Point(x=x, y=y) for x, y in polygon])
                for polygon in self.masks
            ],
        )
