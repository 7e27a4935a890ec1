"""Zones and lines of a source: named areas and lines on its picture, in normalised coordinates
((0, 0) top left, (1, 1) bottom right). Objects are judged by the bottom centre of their box."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, cast

from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.sdk.common import enum_name

ZoneKind = Literal["unspecified", "area", "line", "unknown"]
Direction = Literal["in", "out"]
ZONE_KINDS: dict[str, pb.ZoneKind.ValueType] = {
    "area": pb.ZONE_KIND_AREA,
    "line": pb.ZONE_KIND_LINE,
}
CROSSINGS: dict[Direction, pb.CrossingDirection.ValueType] = {
    "in": pb.CROSSING_DIRECTION_IN,
    "out": pb.CROSSING_DIRECTION_OUT,
}


@dataclass(frozen=True)
class Zone:
    """An area (enter, leave, loitering after ``loiter_s`` seconds; 0: none) or a line from A to
    B (crossings; ``direction`` "in" is from the left of A→B to its right as seen on the picture,
    "out" the other way, None both). ``classes`` empty: every class raises events."""

    name: str
    kind: ZoneKind
    points: tuple[tuple[float, float], ...]
    classes: tuple[str, ...] = ()
    loiter_s: float = 0.0
    direction: Direction | None = None

    @classmethod
    def area(
        cls,
        name: str,
        points: Iterable[tuple[float, float]],
        *,
        classes: Iterable[str] = (),
        loiter_s: float = 0.0,
    ) -> Zone:
        return cls(name, "area", tuple(points), tuple(classes), loiter_s)

    @classmethod
    def line(
        cls,
        name: str,
        a: tuple[float, float],
        b: tuple[float, float],
        *,
        classes: Iterable[str] = (),
        direction: Direction | None = None,
    ) -> Zone:
        return cls(name, "line", (a, b), tuple(classes), direction=direction)

    @classmethod
    def from_proto(cls, m: pb.Zone) -> Zone:
        direction = {v: k for k, v in CROSSINGS.items()}.get(m.direction)
        return cls(
            name=m.name,
            kind=cast(ZoneKind, enum_name(pb.ZoneKind.Name, m.kind, "ZONE_KIND_")),
            points=tuple((p.x, p.y) for p in m.points),
            classes=tuple(m.classes),
            loiter_s=m.loiter_s,
            direction=direction,
        )

    def to_proto(self) -> pb.Zone:
        if self.kind not in ZONE_KINDS:
            raise ValueError(f"zone {self.name!r}: kind must be area or line")
        return pb.Zone(
            name=self.name,
            kind=ZONE_KINDS[self.kind],
            points=[pb.Point(x=x, y=y) for x, y in self.points],
            classes=self.classes,
            loiter_s=self.loiter_s,
            direction=CROSSINGS[self.direction]
            if self.direction
            else pb.CROSSING_DIRECTION_UNSPECIFIED,
        )
