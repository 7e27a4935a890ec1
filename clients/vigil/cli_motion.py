"""``vigil motion``: how motion gates a source's object detector (sensitivity, masks)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
from typing import Any

from vigil import cli_common as common
from vigil.sdk import MotionSettings, Source

MOTION_JSON = """{"sensitivity": 0.6, "detect_every_frame": false,
 "masks": [[[0.8, 0.0], [1.0, 0.0], [1.0, 0.1], [0.8, 0.1]]]}"""
KEYS = {"detect_every_frame", "sensitivity", "masks"}
MOTION_HELP = (
    "JSON motion settings ('-': standard input): sensitivity 0..1 (higher sees smaller changes "
    "as motion; 0: the service default), detect_every_frame, and masks, areas whose changes are "
    "ignored (a clock overlay, a tree), each a list of normalised [x, y] points"
)


def add_parsers(commands: Any, parent: argparse.ArgumentParser) -> None:
    motion = common.add_command(
        commands,
        "motion",
        parent,
        help="show or set how motion gates a source's detector",
        description="An always-on source runs the object detector only where something moved. "
        "Its motion settings say how small a change counts (sensitivity), which areas to ignore "
        "(masks, in normalised coordinates: (0, 0) top left, (1, 1) bottom right), or to detect "
        "on every frame instead.",
    )
    actions = motion.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser("show", parents=[parent], help="print a source's motion settings")
    show.add_argument("source", metavar="ID", help="id of the source")
    common.handled_by(show, motion_show, "detector")
    put = actions.add_parser(
        "set",
        parents=[parent],
        help="replace a source's motion settings with those of a JSON file",
        description=f"{MOTION_HELP}; fields left out take their defaults. For example:\n"
        f"{MOTION_JSON}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    put.add_argument("source", metavar="ID", help="id of the source")
    put.add_argument("file", metavar="FILE", help="JSON motion settings ('-': standard input)")
    common.handled_by(put, motion_set, "detector")


def read_motion(file: str) -> MotionSettings:
    try:
        text = sys.stdin.read() if file == "-" else pathlib.Path(file).read_text()
        entry = json.loads(text)
        if not isinstance(entry, dict) or set(entry) - KEYS:
            raise TypeError(f"expected a JSON object of {', '.join(sorted(KEYS))}")
        return MotionSettings(
            detect_every_frame=bool(entry.get("detect_every_frame", False)),
            sensitivity=float(entry.get("sensitivity", 0.0)),
            masks=tuple(
                tuple((float(x), float(y)) for x, y in mask) for mask in entry.get("masks", ())
            ),
        )
    except (OSError, ValueError, TypeError) as exc:
        raise common.UsageError(f"cannot read motion settings from {file}: {exc}") from None


def motion_text(source: Source) -> str:
    m = source.motion
    how = "every frame detected" if m.detect_every_frame else "detection gated by motion"
    sensitivity = f"{m.sensitivity:g}" if m.sensitivity else "default"
    lines = [f"{source.id}: {how}, sensitivity {sensitivity}, {len(m.masks)} masks"]
    lines += [f"  mask {n}: " + " ".join(f"{x:g},{y:g}" for x, y in mask) for n, mask in
              enumerate(m.masks, start=1)]  # fmt: skip
    return "\n".join(lines)


def motion_show(args: argparse.Namespace) -> int:
    with common.detector_client(args) as client:
        source = client.get_source(args.source)
    return common.output(args, source.motion, motion_text(source))


def motion_set(args: argparse.Namespace) -> int:
    motion = read_motion(args.file)
    with common.detector_client(args) as client:
        spec = client.get_source(args.source).spec
        source = client.update_source(dataclasses.replace(spec, motion=motion))
    return common.output(args, source.motion, motion_text(source))
