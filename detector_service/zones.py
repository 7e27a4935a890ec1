"""Zones and lines of a source: enter, leave, loitering and line crossings of tracked objects.

An object is judged by one point, the bottom centre of its box (supervision's default anchor for
``PolygonZone``): where it stands on the ground. The centre of a person's box lies inside an area
drawn on the floor only once most of the body has passed its edge, and for a tall person near the
camera it can lie above the area altogether; the feet are where the person is.

Areas use supervision's ``PolygonZone`` for the "is the anchor inside" test (a mask per frame
size, rebuilt when the stream's size changes). Everything that has a memory is kept here by the
frames' capture times, never by frame counts: motion gating runs the detector at an uneven rate
(every frame while something moves, a slow refresh while objects sit still, nothing on a static
scene), so "N frames" means nothing. supervision's ``LineZone`` forgets a track after two frames
without it and confirms a side over frames, so crossings are judged here instead: a crossing is
the track's movement, from its last position on one side to its position on the other, passing
through the segment A→B (supervision's ``Vector.cross_product`` gives the sides). A track unseen for
``track_lost_s`` (the tracker's own budget) is gone: it leaves the areas it was in.

A track is an object only once the tracker has confirmed it (it has an id); boxes without one are
ignored here. An object first seen inside an area enters it (it may have come out of a door in
the area). Loitering is raised once per stay, at the first frame the object has been inside for
``loiter_s``.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import supervision as sv
from supervision.geometry.core import Point, Vector

from detector_service.detections import FloatArray
from detector_service.subscribers import Processed
from vigil.common.v1 import common_pb2
from vigil.core.errors import InvalidInput
from vigil.detector.v1 import detector_service_pb2 as pb

# Receives each event with the annotated frame it happened in (the event log's ``record``).
EventSink = Callable[[pb.SourceEvent, bytes | None], None]

MAX_ZONES = 32
MAX_POINTS = 64
NAME_RULE = re.compile(r"[A-Za-z0-9_\- ]{1,64}")
AREA, LINE = pb.ZONE_KIND_AREA, pb.ZONE_KIND_LINE
IN, OUT = pb.CROSSING_DIRECTION_IN, pb.CROSSING_DIRECTION_OUT


def validate_zones(spec: pb.SourceSpec) -> None:
    """Refuse zones and incident_zones that cannot work, saying which zone and why."""
    if len(spec.zones) > MAX_ZONES:
        raise InvalidInput(f"at most {MAX_ZONES} zones per source", field="zones")
    names: set[str] = set()
    for n, zone in enumerate(spec.zones):
        where = f"zone {zone.name!r}" if zone.name else f"zone #{n + 1}"
        if not NAME_RULE.fullmatch(zone.name):
            raise InvalidInput(
                f"{where}: a name of 1 to 64 letters, digits, spaces, '-' or '_' is required",
                field="zones",
            )
        if zone.name in names:
            raise InvalidInput(f"{where}: zone names must be unique", field="zones")
        names.add(zone.name)
        _validate_zone(zone, where)
    areas = {z.name for z in spec.zones if z.kind == AREA}
    for name in spec.incident_zones:
        if name not in areas:
            raise InvalidInput(
                f"incident_zones names {name!r}, which is not an area among the source's zones",
                field="incident_zones",
            )


def _validate_zone(zone: pb.Zone, where: str) -> None:
    if zone.kind == AREA and len(zone.points) < 3:
        raise InvalidInput(f"{where}: an area needs at least 3 points", field="zones")
    if zone.kind == LINE and len(zone.points) != 2:
        raise InvalidInput(f"{where}: a line needs exactly 2 points (A, B)", field="zones")
    if zone.kind not in (AREA, LINE):
        raise InvalidInput(f"{where}: kind must be area or line", field="zones")
    if len(zone.points) > MAX_POINTS:
        raise InvalidInput(f"{where}: at most {MAX_POINTS} points", field="zones")
    for p in zone.points:
        if not (0.0 <= p.x <= 1.0 and 0.0 <= p.y <= 1.0):
            raise InvalidInput(
                f"{where}: point ({p.x:g}, {p.y:g}) is off the picture: coordinates are "
                "normalised, from 0 to 1",
                field="zones",
            )
    if zone.kind == LINE and (zone.points[0].x, zone.points[0].y) == (
        zone.points[1].x,
        zone.points[1].y,
    ):
        raise InvalidInput(f"{where}: a line's two points must differ", field="zones")
    if not (math.isfinite(zone.loiter_s) and zone.loiter_s >= 0):
        raise InvalidInput(f"{where}: loiter_s must be 0 (off) or more seconds", field="zones")
    if zone.kind == LINE and zone.loiter_s:
        raise InvalidInput(f"{where}: loiter_s is for areas, not lines", field="zones")
    if zone.direction not in pb.CrossingDirection.values():
        raise InvalidInput(f"{where}: direction must be in, out or unset", field="zones")
    if zone.kind == AREA and zone.direction:
        raise InvalidInput(f"{where}: direction is for lines, not areas", field="zones")
    if any(not c for c in zone.classes):
        raise InvalidInput(f"{where}: class names must not be empty", field="zones")


ZONE_KEYS = {"name", "kind", "points", "classes", "loiter_s", "direction"}
TOML_KINDS: dict[str, pb.ZoneKind.ValueType] = {"area": AREA, "line": LINE}
TOML_DIRECTIONS: dict[str, pb.CrossingDirection.ValueType] = {"in": IN, "out": OUT}


def zones_from_tables(tables: Any, where: str) -> list[pb.Zone]:
    """Zones from a sources file's ``[[sources.zones]]`` tables (checked by ``validate_zones``
    with the rest of the spec)::

        [[sources.zones]]
        name = "door"
        kind = "area"              # area | line
        points = [[0.1, 0.2], [0.4, 0.2], [0.4, 0.9]]
        classes = ["person"]       # optional; every class when left out
        loiter_s = 30              # areas, optional
        # direction = "in"         # lines, optional: in | out
    """
    if not isinstance(tables, list):
        raise InvalidInput(f"{where}: zones must be a list of tables")
    zones = []
    for table in tables:
        if not isinstance(table, dict) or set(table) - ZONE_KEYS:
            raise InvalidInput(f"{where}: a zone is a table of {sorted(ZONE_KEYS)}")
        if table.get("direction", "in") not in TOML_DIRECTIONS:
            raise InvalidInput(f"{where}: a line's direction is in or out (or left out: both)")
        try:
            zones.append(
                pb.Zone(
                    name=table.get("name", ""),
                    kind=TOML_KINDS.get(str(table.get("kind")), pb.ZONE_KIND_UNSPECIFIED),
                    points=[pb.Point(x=x, y=y) for x, y in table.get("points", [])],
                    classes=table.get("classes", []),
                    loiter_s=table.get("loiter_s", 0.0),
                    direction=TOML_DIRECTIONS.get(
                        str(table.get("direction")), pb.CROSSING_DIRECTION_UNSPECIFIED
                    ),
                )
            )
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"{where}: zone {table.get('name', '')!r}: {exc}") from None
    return zones


@dataclass(slots=True)
class _Stay:
    """A track inside an area."""

    entered_ns: int
    seen_ns: int
    detection: common_pb2.Detection
    loitered: bool = False


@dataclass(slots=True)
class _Side:
    """The side of a line a track was last seen on (+1: right of A→B on the picture)."""

    side: int
    point: Point
    seen_ns: int


class _Area:
    def __init__(self, zone: pb.Zone) -> None:
        self.zone = zone
        self.stays: dict[int, _Stay] = {}
        self._size: tuple[int, int] = (0, 0)
        self._polygon: sv.PolygonZone | None = None

    def inside(self, xyxy: FloatArray, width: int, height: int) -> npt.NDArray[np.bool_]:
        """Whether each box's bottom centre lies inside, for a frame of this size."""
        if self._polygon is None or self._size != (width, height):
            corners = np.array([[p.x * width, p.y * height] for p in self.zone.points])
            self._polygon = sv.PolygonZone(np.rint(corners).astype(np.int64))
            self._size = (width, height)
        return self._polygon.trigger(sv.Detections(xyxy=xyxy))


class _Line:
    def __init__(self, zone: pb.Zone) -> None:
        self.zone = zone
        a, b = zone.points
        self.vector = Vector(Point(a.x, a.y), Point(b.x, b.y))
        self.sides: dict[int, _Side] = {}

    def crossing(
        self, track_id: int, point: Point, time_ns: int
    ) -> pb.CrossingDirection.ValueType | None:
        """The direction in which the track crossed since it was last seen, if it did."""
        cross = self.vector.cross_product(point)
        side = (cross > 0) - (cross < 0)
        if side == 0:
            return None  # on the line: the side it was on stands until it is off it
        last = self.sides.get(track_id)
        self.sides[track_id] = _Side(side, point, time_ns)
        if last is None or last.side == side:
            return None
        # The path from the last point to this one must pass through the segment, not around
        # one of its ends: A and B lie on either side of the path (or on it).
        path = Vector(last.point, point)
        if path.cross_product(self.vector.start) * path.cross_product(self.vector.end) > 0:
            return None
        return IN if side > 0 else OUT


class ZoneWatch:
    """One source's zones, fed every detected frame (on its processing thread) in time order."""

    def __init__(
        self, source_id: str, spec: pb.SourceSpec, track_lost_s: float, sink: EventSink
    ) -> None:
        self.source_id = source_id
        self.sink = sink
        self._lost_ns = int(track_lost_s * 1e9)
        self._lock = threading.Lock()
        self._areas: dict[str, _Area] = {}
        self._lines: dict[str, _Line] = {}
        self._incident_zones: tuple[str, ...] = ()
        self._size = (0, 0)
        self.configure(spec)

    def configure(self, spec: pb.SourceSpec) -> None:
        """Take the spec's zones now; zones that did not change keep who is inside them."""
        with self._lock:
            areas, lines = {}, {}
            for zone in spec.zones:
                if zone.kind == AREA:
                    kept = self._areas.get(zone.name)
                    areas[zone.name] = kept if kept and kept.zone == zone else _Area(zone)
                else:
                    line = self._lines.get(zone.name)
                    lines[zone.name] = line if line and line.zone == zone else _Line(zone)
            self._areas, self._lines = areas, lines
            self._incident_zones = tuple(spec.incident_zones)

    def observe(self, item: Processed) -> None:
        """Account for one detected frame; events go to the sink, with the frame's JPEG."""
        if item.error is not None or not (self._areas or self._lines):
            return
        tracked = [d for d in item.detections if d.HasField("track_id")]
        xyxy = np.array(
            [[d.box.x_min, d.box.y_min, d.box.x_max, d.box.y_max] for d in tracked], np.float32
        ).reshape(-1, 4)
        events: list[pb.SourceEvent] = []
        with self._lock:
            self._size = (item.width, item.height)
            for area in self._areas.values():
                inside = area.inside(xyxy, item.width, item.height)
                events += self._area_events(area, tracked, inside, item.capture_ns)
            for line in self._lines.values():
                events += self._line_events(line, tracked, item)
        for event in events:
            self.sink(event, item.jpeg or None)

    def _area_events(
        self,
        area: _Area,
        tracked: list[common_pb2.Detection],
        inside: npt.NDArray[np.bool_],
        now: int,
    ) -> list[pb.SourceEvent]:
        zone, events = area.zone, []
        seen: set[int] = set()
        for d, is_in in zip(tracked, inside, strict=True):
            if zone.classes and d.class_name not in zone.classes:
                continue
            seen.add(d.track_id)
            stay = area.stays.get(d.track_id)
            if is_in and stay is None:
                area.stays[d.track_id] = _Stay(now, now, d)
                events.append(self._event(pb.SOURCE_EVENT_KIND_ZONE_ENTER, zone, d, now))
            elif is_in and stay is not None:
                stay.seen_ns, stay.detection = now, d
                stayed_ns = now - stay.entered_ns
                if zone.loiter_s and not stay.loitered and stayed_ns >= zone.loiter_s * 1e9:
                    stay.loitered = True
                    event = self._event(pb.SOURCE_EVENT_KIND_ZONE_LOITER, zone, d, now)
                    event.detail = f"inside for {stayed_ns / 1e9:.1f} s"
                    events.append(event)
            elif stay is not None:
                del area.stays[d.track_id]
                events.append(self._event(pb.SOURCE_EVENT_KIND_ZONE_LEAVE, zone, d, now))
        for track_id, stay in list(area.stays.items()):
            if track_id not in seen and now - stay.seen_ns > self._lost_ns:
                del area.stays[track_id]
                # Lost from sight inside: it left when it was last seen there.
                event = self._event(
                    pb.SOURCE_EVENT_KIND_ZONE_LEAVE, zone, stay.detection, stay.seen_ns
                )
                event.detail = "lost from sight inside the zone"
                events.append(event)
        return events

    def _line_events(
        self, line: _Line, tracked: list[common_pb2.Detection], item: Processed
    ) -> list[pb.SourceEvent]:
        zone, now, events = line.zone, item.capture_ns, []
        for d in tracked:
            if zone.classes and d.class_name not in zone.classes:
                continue
            anchor = Point((d.box.x_min + d.box.x_max) / 2 / item.width, d.box.y_max / item.height)
            direction = line.crossing(d.track_id, anchor, now)
            if direction is not None and zone.direction in (0, direction):
                event = self._event(pb.SOURCE_EVENT_KIND_LINE_CROSS, zone, d, now)
                event.direction = direction
                events.append(event)
        for track_id, side in list(line.sides.items()):
            if now - side.seen_ns > self._lost_ns:
                del line.sides[track_id]
        return events

    def _event(
        self,
        kind: pb.SourceEventKind.ValueType,
        zone: pb.Zone,
        detection: common_pb2.Detection,
        time_ns: int,
    ) -> pb.SourceEvent:
        event = pb.SourceEvent(
            source_id=self.source_id,
            kind=kind,
            zone=zone.name,
            class_name=detection.class_name,
            track_id=detection.track_id,
            detection=detection,
        )
        event.at.FromNanoseconds(time_ns)
        return event

    def place(self, detection: common_pb2.Detection) -> tuple[str, ...] | None:
        """The areas ``detection`` of the newest frame lies in (by its anchor, whatever its
        class); None when the source limits incidents to zones and it is in none of them."""
        with self._lock:
            width, height = self._size
            if not self._areas or not width:
                return None if self._incident_zones else ()
            box = np.array(
                [[detection.box.x_min, detection.box.y_min, detection.box.x_max,
                  detection.box.y_max]], np.float32,
            )  # fmt: skip
            names = tuple(
                name for name, a in self._areas.items() if a.inside(box, width, height)[0]
            )
            if self._incident_zones and not set(names) & set(self._incident_zones):
                return None
            return names


class Zones:
    """The zone watches of every source, by source id: what the incident rule asks."""

    def __init__(self, track_lost_s: float, sink: EventSink) -> None:
        self.track_lost_s = track_lost_s
        self.sink = sink
        self._watches: dict[str, ZoneWatch] = {}
        self._lock = threading.Lock()

    def watch(self, spec: pb.SourceSpec) -> ZoneWatch:
        """The source's watch, made on first use and reconfigured after."""
        with self._lock:
            watch = self._watches.get(spec.id)
            if watch is None:
                watch = self._watches[spec.id] = ZoneWatch(
                    spec.id, spec, self.track_lost_s, self.sink
                )
            else:
                watch.configure(spec)
            return watch

    def forget(self, source_id: str) -> None:
        with self._lock:
            self._watches.pop(source_id, None)

    def place(self, source_id: str, detection: common_pb2.Detection) -> tuple[str, ...] | None:
        with self._lock:
            watch = self._watches.get(source_id)
        return () if watch is None else watch.place(detection)
