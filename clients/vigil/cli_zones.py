"""``vigil zones`` (a source's areas and lines) and ``vigil events`` (zone and camera-health
events): the detector service."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import pathlib
import sys
from typing import Any

from vigil import cli_common as common
from vigil.sdk import Source, SourceEvent, Zone
from vigil.sdk.detector_types import SOURCE_EVENT_KINDS

ZONES_JSON = """[{"name": "door", "kind": "area", "points": [[0.1, 0.2], [0.4, 0.2], [0.4, 0.9]],
  "classes": ["person"], "loiter_s": 30},
 {"name": "gate", "kind": "line", "points": [[0.5, 0.0], [0.5, 1.0]], "direction": "in"}]"""


def add_parsers(commands: Any, parent: argparse.ArgumentParser) -> None:
    zones = common.add_command(
        commands,
        "zones",
        parent,
        help="list or set a source's zones and lines",
        description="Zones are named areas (objects entering, leaving, loitering) and lines "
        "(objects crossing, in a direction) on a source's picture, in normalised coordinates: "
        "(0, 0) is the top-left corner, (1, 1) the bottom-right one. Objects are judged by the "
        "bottom centre of their box, where they stand.",
    )
    actions = zones.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = actions.add_parser("ls", parents=[parent], help="list a source's zones")
    ls.add_argument("source", metavar="ID", help="id of the source")
    common.handled_by(ls, zones_ls, "detector")
    put = actions.add_parser(
        "set",
        parents=[parent],
        help="replace a source's zones with those of a JSON file",
        description=f"FILE ('-': standard input) holds a JSON list of zones, for example:\n"
        f"{ZONES_JSON}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    put.add_argument("source", metavar="ID", help="id of the source")
    put.add_argument("file", metavar="FILE", help="JSON list of zones ('-': standard input)")
    put.add_argument(
        "--incident-zones",
        default=None,
        metavar="NAMES",
        help="comma-separated areas outside which weapons raise no incident ('' : anywhere); "
        "left out keeps the source's",
    )
    common.handled_by(put, zones_set, "detector")

    events = common.add_command(
        commands,
        "events",
        parent,
        help="list recent zone and camera-health events, or follow new ones",
        description="Without --follow, print the stored source events, newest first. With "
        "--follow, print them as they happen until interrupted.",
    )
    events.add_argument("--source", default="", metavar="ID", help="one source only")
    events.add_argument(
        "--kind",
        action="append",
        default=[],
        choices=sorted(SOURCE_EVENT_KINDS),
        help="only this kind (repeatable)",
    )
    events.add_argument("--since", metavar="ISO", help="only events at or after this time")
    events.add_argument("--until", metavar="ISO", help="only events before this time")
    events.add_argument("--limit", type=int, default=20, metavar="N", help="at most N (20)")
    events.add_argument("--follow", "-f", action="store_true", help="follow new events")
    common.handled_by(events, events_command, "detector")


def zone_row(z: Zone) -> list[object]:
    points = " ".join(f"{x:g},{y:g}" for x, y in z.points)
    extra = [f"loiter {z.loiter_s:g} s"] if z.loiter_s else []
    extra += [f"direction {z.direction}"] if z.direction else []
    return [z.name, z.kind, points, ",".join(z.classes) or "all", "; ".join(extra) or "-"]


def zones_text(source: Source) -> str:
    if not source.zones:
        return f"no zones on {source.id}"
    rows = [zone_row(z) for z in source.zones]
    text = common.table(["NAME", "KIND", "POINTS", "CLASSES", "RULES"], rows)
    if source.incident_zones:
        text += f"\nincidents only inside: {', '.join(source.incident_zones)}"
    return text


def zones_ls(args: argparse.Namespace) -> int:
    with common.detector_client(args) as client:
        source = client.get_source(args.source)
    return common.output(args, source.zones, zones_text(source))


def read_zones(file: str) -> tuple[Zone, ...]:
    try:
        text = sys.stdin.read() if file == "-" else pathlib.Path(file).read_text()
        entries = json.loads(text)
        if not isinstance(entries, list):
            raise TypeError("expected a JSON list of zones")
        return tuple(zone_of(entry) for entry in entries)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise common.UsageError(f"cannot read zones from {file}: {exc}") from None


def zone_of(entry: dict[str, Any]) -> Zone:
    return Zone(
        name=str(entry["name"]),
        kind=entry["kind"],
        points=tuple((float(x), float(y)) for x, y in entry["points"]),
        classes=tuple(str(c) for c in entry.get("classes", ())),
        loiter_s=float(entry.get("loiter_s", 0.0)),
        direction=entry.get("direction"),
    )


def zones_set(args: argparse.Namespace) -> int:
    zones = read_zones(args.file)
    with common.detector_client(args) as client:
        spec = client.get_source(args.source).spec
        incident_zones = spec.incident_zones
        if args.incident_zones is not None:
            incident_zones = tuple(n.strip() for n in args.incident_zones.split(",") if n.strip())
        changed = dataclasses.replace(spec, zones=zones, incident_zones=incident_zones)
        source = client.update_source(changed)
    return common.output(args, source.zones, zones_text(source))


def event_line(e: SourceEvent) -> str:
    what = e.kind.upper()
    if e.direction:
        what += f" {e.direction}"
    subject = f"{e.class_name} #{e.track_id} " if e.class_name else ""
    where = f"{e.zone} " if e.zone else ""
    cleared = " (cleared)" if e.cleared else ""
    detail = f"  {e.detail}" if e.detail else ""
    return f"{common.when(e.at)}  {what:14} {subject}{where}on {e.source_id}{cleared}{detail}"


def moment(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        at = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise common.UsageError(f"not an ISO 8601 time: {text!r}") from None
    return (at if at.tzinfo else at.astimezone()).timestamp()


def events_command(args: argparse.Namespace) -> int:
    since, until = moment(args.since), moment(args.until)
    with common.detector_client(args) as client:
        if args.follow:
            with client.incidents(args.source, include_events=True) as stream:
                for item in stream:
                    if isinstance(item, SourceEvent) and (not args.kind or item.kind in args.kind):
                        print(json.dumps(common.plain(item)) if args.json else event_line(item))
                        sys.stdout.flush()
            return common.EXIT_OK
        found = common.collect(
            lambda size, token: client.list_events(
                args.source, start=since, end=until, kinds=args.kind, page_size=size,
                page_token=token,
            ),
            args.limit,
        )  # fmt: skip
    text = "\n".join(event_line(e) for e in found) if found else "no events"
    return common.output(args, found, text)
