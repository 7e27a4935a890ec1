"""Zone logic on scripted tracked paths: each frame is a capture time and the tracked boxes in it,
fed to a source's ``ZoneWatch`` as the live pipeline does (at irregular times, as motion gating
detects them)."""

from __future__ import annotations

import pytest

from detector_service.subscribers import Processed
from detector_service.zones import ZoneWatch, validate_zones
from vigil.common.v1 import common_pb2
from vigil.core.errors import InvalidInput
from vigil.detector.v1 import detector_service_pb2 as pb

W, H = 400, 200
LOST_S = 2.0
ENTER, LEAVE = pb.SOURCE_EVENT_KIND_ZONE_ENTER, pb.SOURCE_EVENT_KIND_ZONE_LEAVE
LOITER, CROSS = pb.SOURCE_EVENT_KIND_ZONE_LOITER, pb.SOURCE_EVENT_KIND_LINE_CROSS
IN, OUT = pb.CROSSING_DIRECTION_IN, pb.CROSSING_DIRECTION_OUT


def area(name: str, x0: float, y0: float, x1: float, y1: float, **kw: object) -> pb.Zone:
    corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    return pb.Zone(
        name=name,
        kind=pb.ZONE_KIND_AREA,
        points=[pb.Point(x=x, y=y) for x, y in corners],
        **kw,  # type: ignore[arg-type]
    )


def line(name: str, a: tuple[float, float], b: tuple[float, float], **kw: object) -> pb.Zone:
    points = [pb.Point(x=a[0], y=a[1]), pb.Point(x=b[0], y=b[1])]
    return pb.Zone(name=name, kind=pb.ZONE_KIND_LINE, points=points, **kw)  # type: ignore[arg-type]


def person(track_id: int, x: float, y: float, class_name: str = "person") -> common_pb2.Detection:
    """A 20x40 box whose bottom centre stands at normalised (x, y)."""
    px, py = x * W, y * H
    box = common_pb2.BoundingBox(x_min=px - 10, y_min=py - 40, x_max=px + 10, y_max=py)
    return common_pb2.Detection(box=box, class_name=class_name, confidence=0.9, track_id=track_id)


class Scene:
    def __init__(self, *zones: pb.Zone, incident_zones: tuple[str, ...] = ()) -> None:
        self.events: list[pb.SourceEvent] = []
        self.snapshots: list[bytes | None] = []
        spec = pb.SourceSpec(id="cam", zones=zones, incident_zones=incident_zones)
        self.watch = ZoneWatch("cam", spec, LOST_S, self._sink)

    def _sink(self, event: pb.SourceEvent, jpeg: bytes | None) -> None:
        self.events.append(event)
        self.snapshots.append(jpeg)

    def frame(self, at_s: float, *detections: common_pb2.Detection) -> None:
        self.watch.observe(
            Processed(
                sequence=0,
                capture_ns=int(at_s * 1e9),
                jpeg=b"frame at %.1f" % at_s,
                width=W,
                height=H,
                detections=list(detections),
                inference_ms=0.0,
                error=None,
            )
        )

    def kinds(self) -> list[tuple[int, str, int, float]]:
        return [(e.kind, e.zone, e.track_id, e.at.ToNanoseconds() / 1e9) for e in self.events]


def test_enter_and_leave_are_judged_by_the_feet() -> None:
    scene = Scene(area("door", 0.4, 0.5, 0.6, 1.0))
    scene.frame(0.0, person(1, 0.2, 0.8))
    # The box overlaps the area from above, but the feet are outside: not in yet.
    scene.frame(0.1, person(1, 0.5, 0.45))
    scene.frame(0.3, person(1, 0.5, 0.7))
    scene.frame(0.35, person(1, 0.55, 0.75))
    scene.frame(1.0, person(1, 0.8, 0.7))
    assert scene.kinds() == [(ENTER, "door", 1, 0.3), (LEAVE, "door", 1, 1.0)]
    assert scene.snapshots == [b"frame at 0.3", b"frame at 1.0"]
    assert scene.events[0].class_name == "person"
    assert scene.events[0].detection.box.y_max == pytest.approx(0.7 * H)


def test_an_object_first_seen_inside_enters_and_one_lost_inside_leaves() -> None:
    scene = Scene(area("yard", 0.0, 0.0, 0.5, 1.0))
    scene.frame(0.0, person(7, 0.2, 0.5))
    scene.frame(1.0, person(7, 0.25, 0.5))
    # Unseen for less than the track budget: still inside, nothing happens.
    scene.frame(2.5)
    assert scene.kinds() == [(ENTER, "yard", 7, 0.0)]
    # Gone for longer: it left when it was last seen.
    scene.frame(3.5)
    assert scene.kinds()[1:] == [(LEAVE, "yard", 7, 1.0)]
    assert scene.events[1].detail == "lost from sight inside the zone"


def test_loitering_is_raised_once_per_stay_by_time_not_frames() -> None:
    scene = Scene(area("atm", 0.0, 0.0, 0.5, 1.0, loiter_s=5.0))
    # Irregular detection times: a burst, then a slow refresh while it stands still.
    for at in (0.0, 0.05, 0.1, 0.15, 2.0, 4.0, 4.9):
        scene.frame(at, person(3, 0.25, 0.5))
    assert [k for k, *_ in scene.kinds()] == [ENTER]
    scene.frame(5.0, person(3, 0.25, 0.5))
    scene.frame(6.0, person(3, 0.25, 0.5))
    scene.frame(9.0, person(3, 0.25, 0.5))
    assert scene.kinds() == [(ENTER, "atm", 3, 0.0), (LOITER, "atm", 3, 5.0)]
    assert scene.events[1].detail == "inside for 5.0 s"
    # A new stay may loiter again.
    scene.frame(9.5, person(3, 0.9, 0.5))
    scene.frame(10.0, person(3, 0.25, 0.5))
    scene.frame(15.5, person(3, 0.25, 0.5))
    assert [k for k, *_ in scene.kinds()] == [ENTER, LOITER, LEAVE, ENTER, LOITER]


def test_line_crossings_have_a_direction_and_the_filter_keeps_one() -> None:
    # A vertical line from top (A) to bottom (B): its right on the picture is the left half.
    both = line("gate", (0.5, 0.1), (0.5, 0.9))
    inbound = line("gate-in", (0.5, 0.1), (0.5, 0.9), direction=IN)
    scene = Scene(both, inbound)
    scene.frame(0.0, person(1, 0.8, 0.5))
    scene.frame(0.5, person(1, 0.2, 0.5))  # right of the picture to left: to the right of A→B
    scene.frame(1.0, person(1, 0.7, 0.6))  # and back
    crossings = [(e.zone, e.direction) for e in scene.events]
    assert crossings == [("gate", IN), ("gate-in", IN), ("gate", OUT)]
    assert all(e.kind == CROSS for e in scene.events)


def test_passing_around_the_end_of_a_line_is_no_crossing() -> None:
    scene = Scene(line("fence", (0.4, 0.5), (0.6, 0.5)))
    scene.frame(0.0, person(1, 0.3, 0.3))
    scene.frame(0.5, person(1, 0.2, 0.7))  # beyond the fence's end
    scene.frame(1.0, person(1, 0.5, 0.3))  # above again, past its middle: around, not through
    assert scene.events == []
    scene.frame(1.5, person(1, 0.5, 0.8))  # straight through
    assert [e.direction for e in scene.events] == [IN]


def test_a_track_unseen_past_its_budget_does_not_cross_when_it_comes_back() -> None:
    scene = Scene(line("gate", (0.5, 0.0), (0.5, 1.0)))
    scene.frame(0.0, person(4, 0.2, 0.5))
    scene.frame(1.0, person(9, 0.9, 0.1))
    scene.frame(3.5, person(9, 0.9, 0.1))  # track 4 is forgotten here
    scene.frame(4.0, person(4, 0.8, 0.5))
    assert scene.events == []


def test_class_filters_and_untracked_boxes() -> None:
    scene = Scene(area("lot", 0.0, 0.0, 1.0, 1.0, classes=["car"]), line("l", (0.5, 0), (0.5, 1)))
    untracked = person(1, 0.5, 0.5)
    untracked.ClearField("track_id")
    scene.frame(0.0, person(1, 0.2, 0.5), person(2, 0.3, 0.5, "car"), untracked)
    scene.frame(0.5, person(1, 0.8, 0.5), person(2, 0.3, 0.6, "car"))
    assert [(e.kind, e.zone, e.class_name) for e in scene.events] == [
        (ENTER, "lot", "car"),
        (CROSS, "l", "person"),
    ]


def test_changing_zones_keeps_the_state_of_those_unchanged() -> None:
    door = area("door", 0.0, 0.0, 0.5, 1.0)
    scene = Scene(door)
    scene.frame(0.0, person(1, 0.2, 0.5))
    scene.watch.configure(pb.SourceSpec(zones=[door, area("all", 0, 0, 1, 1)]))
    scene.frame(0.5, person(1, 0.25, 0.5))
    # One enter of the new zone; "door" did not change, so no second enter there.
    assert [(e.kind, e.zone) for e in scene.events] == [(ENTER, "door"), (ENTER, "all")]
    scene.watch.configure(pb.SourceSpec())
    scene.frame(1.0, person(1, 0.9, 0.5))
    assert len(scene.events) == 2


def test_placement_for_the_incident_rule() -> None:
    scene = Scene(area("vault", 0.0, 0.0, 0.5, 1.0), area("hall", 0.0, 0.0, 1.0, 1.0))
    inside, outside = person(1, 0.2, 0.5), person(2, 0.8, 0.5)
    scene.frame(0.0, inside, outside)
    assert scene.watch.place(inside) == ("vault", "hall")
    assert scene.watch.place(outside) == ("hall",)
    limited = Scene(area("vault", 0.0, 0.0, 0.5, 1.0), incident_zones=("vault",))
    limited.frame(0.0, inside, outside)
    assert limited.watch.place(inside) == ("vault",)
    assert limited.watch.place(outside) is None


@pytest.mark.parametrize(
    ("zones", "incident_zones", "message"),
    [
        ([area("a", 0, 0, 1, 1), area("a", 0, 0, 1, 1)], (), "zone 'a': zone names must be unique"),
        ([pb.Zone(name="a", kind=pb.ZONE_KIND_AREA, points=[pb.Point(), pb.Point(x=1)])], (),
         "zone 'a': an area needs at least 3 points"),
        ([pb.Zone(name="l", kind=pb.ZONE_KIND_LINE, points=[pb.Point()] * 3)], (),
         "zone 'l': a line needs exactly 2 points (A, B)"),
        ([area("a", 0, 0, 1.5, 1)], (), "zone 'a': point (1.5, 0) is off the picture"),
        ([area("a", 0, 0, 1, 1, loiter_s=-1)], (), "zone 'a': loiter_s must be 0 (off) or more"),
        ([line("l", (0, 0), (0, 0))], (), "zone 'l': a line's two points must differ"),
        ([area("a/b", 0, 0, 1, 1)], (), "a name of 1 to 64 letters"),
        ([pb.Zone(name="z", points=[pb.Point()] * 3)], (), "zone 'z': kind must be area or line"),
        ([line("l", (0, 0), (1, 1))], ("l",), "incident_zones names 'l', which is not an area"),
        ([area("a", 0, 0, 1, 1, direction=IN)], (), "direction is for lines, not areas"),
    ],
)  # fmt: skip
def test_zones_are_validated(
    zones: list[pb.Zone], incident_zones: tuple[str, ...], message: str
) -> None:
    spec = pb.SourceSpec(id="cam", zones=zones, incident_zones=incident_zones)
    with pytest.raises(InvalidInput) as raised:
        validate_zones(spec)
    assert message in str(raised.value)
