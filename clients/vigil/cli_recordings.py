"""``vigil recordings coverage|export|snapshot|detections``: what the detector recorded of a
source."""

from __future__ import annotations

import argparse
import datetime
import pathlib
import re
import time
from typing import Any

from vigil import cli_common as common
from vigil.sdk import Coverage, RecordedDetections

TIMES_HELP = (
    "Times: ISO 8601 (2025-01-01T12:00:00Z; without a zone, local time), seconds since the "
    "epoch, or relative to now such as -90s, -5m, -2h, -1d (written --start=-5m)."
)
_RELATIVE = re.compile(r"^-(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def moment(text: str) -> float:
    """A time given on the command line, as seconds since the epoch."""
    if relative := _RELATIVE.match(text):
        return time.time() - float(relative.group(1)) * _UNITS[relative.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time: {text!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()  # local time, as `date` shows it
    return parsed.timestamp()


def add_parser(commands: Any, parent: argparse.ArgumentParser) -> None:
    recordings = common.add_command(
        commands,
        "recordings",
        parent,
        help="coverage, export, snapshots and detections of the detector's recordings",
        description="Sources in mode always are recorded continuously. Show what a source's "
        "recording covers, export a time range as one MP4, save a picture, or list what was "
        f"detected. {TIMES_HELP}",
    )
    actions = recordings.add_subparsers(dest="action", required=True, metavar="ACTION")
    coverage = actions.add_parser(
        "coverage", parents=[parent], help="the time ranges recorded (between them: gaps)"
    )
    coverage.add_argument("id", help="id of the source")
    coverage.add_argument("--start", type=moment, help="from (default: the oldest recording)")
    coverage.add_argument("--end", type=moment, help="until (default: now)")
    common.handled_by(coverage, coverage_command, "detector")

    export = actions.add_parser(
        "export", parents=[parent], help="a time range as one MP4 (joined, not re-encoded)"
    )
    export.add_argument("id", help="id of the source")
    export.add_argument("--start", type=moment, required=True, help="from")
    export.add_argument("--end", type=moment, required=True, help="until")
    export.add_argument("--out", "-o", required=True, metavar="FILE", help="write the MP4 here")
    common.handled_by(export, export_command, "detector")

    snapshot = actions.add_parser(
        "snapshot", parents=[parent], help="one picture, recorded at a time or live, as JPEG"
    )
    snapshot.add_argument("id", help="id of the source")
    snapshot.add_argument("--at", type=moment, help="from the recording (default: live)")
    snapshot.add_argument("--out", "-o", required=True, metavar="FILE", help="write the JPEG here")
    common.handled_by(snapshot, snapshot_command, "detector")

    found = actions.add_parser(
        "detections",
        parents=[parent],
        help="the objects detected on the recorded frames of a time range",
    )
    found.add_argument("id", help="id of the source")
    found.add_argument("--start", type=moment, required=True, help="from")
    found.add_argument("--end", type=moment, required=True, help="until")
    common.handled_by(found, detections_command, "detector")


def coverage_text(coverage: Coverage) -> str:
    if not coverage.ranges:
        return "nothing recorded"
    rows = [
        [
            common.when(r.start),
            "recording" if r.end is None else common.when(r.end),
            f"{(r.end if r.end is not None else time.time()) - r.start:.1f}",
        ]
        for r in coverage.ranges
    ]
    total = f"{coverage.bytes / 1e6:.1f} MB kept"
    return common.table(["FROM", "UNTIL", "SECONDS"], rows) + f"\n{total}"


def coverage_command(args: argparse.Namespace) -> int:
    with common.detector_client(args) as client:
        coverage = client.coverage(args.id, start=args.start, end=args.end)
    return common.output(args, coverage, coverage_text(coverage))


def export_command(args: argparse.Namespace) -> int:
    with common.detector_client(args) as client:
        # An export may take a while to join: no unary deadline, the stream's own end.
        recording = client.export(args.id, args.start, args.end, path=pathlib.Path(args.out))
    info = recording.info
    gaps = f", {len(info.gaps)} gaps" if info.gaps else ""
    summary = (
        f"wrote {info.size} bytes to {args.out}: {common.when(info.start)} to "
        f"{common.when(info.end)} ({info.end - info.start:.1f} s{gaps})"
    )
    return common.output(args, recording, summary)


def snapshot_command(args: argparse.Namespace) -> int:
    with common.detector_client(args) as client:
        shot = client.snapshot(args.id, at=args.at)
    pathlib.Path(args.out).write_bytes(shot.jpeg)
    summary = f"wrote {shot.width}x{shot.height} picture of {common.when(shot.at)} to {args.out}"
    return common.output(args, shot, summary)


def detections_text(found: RecordedDetections) -> str:
    if not found.frames:
        return "nothing detected"
    rows = []
    for frame in found.frames:
        objects = ", ".join(
            f"{d.class_name}{'' if d.track_id is None else f' #{d.track_id}'} {d.confidence:.2f}"
            for d in frame.detections
        )
        # Milliseconds: a camera's frames are tens of them apart.
        at = datetime.datetime.fromtimestamp(frame.at).astimezone()
        captured = at.isoformat(timespec="milliseconds")
        rows.append([captured, f"{frame.width}x{frame.height}", objects or "(gone)"])
    return common.table(["CAPTURED", "FRAME", "OBJECTS"], rows)


def detections_command(args: argparse.Namespace) -> int:
    with common.detector_client(args) as client:
        found = client.recorded_detections(args.id, args.start, args.end)
    return common.output(args, found, detections_text(found))
