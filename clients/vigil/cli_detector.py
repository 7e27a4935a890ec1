"""``vigil detect``, ``vigil sources`` and ``vigil incidents``: the detector service (``vigil
zones`` and ``vigil events`` live in ``cli_zones``, ``vigil motion`` in ``cli_motion``,
``vigil rules`` in ``cli_rules``, ``vigil recordings`` in ``cli_recordings``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from vigil import cli_common as common
from vigil import cli_evidence, cli_extras, cli_motion, cli_recordings, cli_rules, cli_zones
from vigil.sdk import Detection, DetectResult, Incident, IncidentEvent, Source
from vigil.sdk.detector_types import SOURCE_KINDS, SOURCE_MODES


def add_parsers(commands: Any, parent: argparse.ArgumentParser) -> None:
    detect = common.add_command(
        commands,
        "detect",
        parent,
        help="run detection over a video file or stream URL",
        description="Read a video file or stream URL (rtsp://, http://...) with OpenCV, send its "
        "frames to the detector service over Detect and print the detections of every frame. "
        "With --out, write the annotated frames as an MP4 video.",
    )
    detect.add_argument("input", metavar="FILE|URL", help="video file or stream URL")
    detect.add_argument("--out", metavar="VIDEO", help="write the annotated video here (mp4v)")
    detect.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    detect.add_argument("--source-id", default="", help="name sent along with the frames")
    detect.add_argument(
        "--track",
        action="store_true",
        help="give each object a track id that follows it across frames (needs --source-id)",
    )
    common.handled_by(detect, detect_command, "detector")

    sources = common.add_command(
        commands,
        "sources",
        parent,
        help="list, add and remove the detector's live sources",
        description="Manage the sources (cameras, streams, files, the test pattern) of the "
        "detector service. Cameras (webcams, streams) are watched always, even with nobody "
        "looking; files and the test pattern while somebody watches. Sources added here are "
        "kept by the service across restarts.",
    )
    actions = sources.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = actions.add_parser("ls", parents=[parent], help="list sources with state and counters")
    common.handled_by(ls, sources_ls, "detector")
    add = actions.add_parser("add", parents=[parent], help="register a source")
    add.add_argument("id", help="unique id: letters, digits, '-' and '_'")
    add.add_argument(
        "--kind",
        required=True,
        choices=sorted(SOURCE_KINDS),
        help="webcam (uri: device index), stream (uri: URL), file (uri: path on the "
        "service's disk) or test_pattern",
    )
    add.add_argument("--uri", default="", help="device index, stream URL or file path")
    add.add_argument("--loop", action="store_true", help="files: start over at the end")
    add.add_argument("--max-fps", type=float, default=0.0, help="frames per second published")
    add.add_argument("--width", type=int, default=0, help="requested width (webcam, pattern)")
    add.add_argument("--height", type=int, default=0, help="requested height (webcam, pattern)")
    add.add_argument("--name", default="", help="name shown in user interfaces")
    add.add_argument(
        "--mode",
        default="",
        choices=sorted(SOURCE_MODES),
        help="always: captured and analysed with nobody watching (the default for webcams and "
        "streams); on_demand: only while somebody watches (the default for files and the test "
        "pattern)",
    )
    add.add_argument(
        "--record-uri",
        default="",
        metavar="URL",
        help="streams: the camera's main stream, for recording, when --uri names its low-"
        "resolution substream (recorded from when the source is always on)",
    )
    add.add_argument(
        "--ptz",
        action="store_true",
        help="the camera pans, tilts or zooms on purpose: a changed scene is not reported as "
        "moved (its new view is learnt once the picture settles)",
    )
    add.add_argument("--motion", metavar="FILE", help=cli_motion.MOTION_HELP)
    common.handled_by(add, sources_add, "detector")
    rm = actions.add_parser("rm", parents=[parent], help="remove a source, ending its streams")
    rm.add_argument("id", help="id of the source")
    common.handled_by(rm, sources_rm, "detector")

    incidents = common.add_command(
        commands,
        "incidents",
        parent,
        help="list recent incidents, or follow new ones",
        description="Without --follow, print the stored incident history, newest first. With "
        "--follow, print incidents as they open and close until interrupted. `vigil incidents "
        "export ID -o FILE` writes an incident's signed evidence package; `confirm ID` and "
        "`dismiss ID` review one; `stats` counts false alarms.",
    )
    incidents.add_argument("--source", default="", metavar="ID", help="one source only")
    incidents.add_argument("--limit", type=int, default=20, metavar="N", help="at most N (20)")
    incidents.add_argument("--follow", "-f", action="store_true", help="follow new incidents")
    common.handled_by(incidents, incidents_command, "detector")
    cli_evidence.add_incident_actions(incidents, parent)
    cli_evidence.add_parsers(commands)
    cli_recordings.add_parser(commands, parent)
    cli_zones.add_parsers(commands, parent)
    cli_motion.add_parsers(commands, parent)
    cli_rules.add_parsers(commands, parent)


def describe(detections: tuple[Detection, ...]) -> str:
    if not detections:
        return "nothing"
    return "; ".join(
        f"{d.class_name}{'' if d.track_id is None else f' #{d.track_id}'}"
        f"{' (weapon)' if d.is_weapon else ''} {d.confidence:.2f} "
        f"[{d.box.x_min:.0f},{d.box.y_min:.0f},{d.box.x_max:.0f},{d.box.y_max:.0f}]"
        for d in detections
    )


def detect_command(args: argparse.Namespace) -> int:
    # OpenCV reads and writes the video: the `video` extra, not the base install.
    cli_extras.require("detect", "video")
    from vigil.cli_video import AnnotatedWriter, VideoReader

    if args.track and not args.source_id:
        common.fail("--track needs --source-id: track ids belong to a named stream")
        return common.EXIT_USAGE
    reader = VideoReader(args.input, args.max_frames, args.source_id)
    writer = AnnotatedWriter(args.out, reader.fps) if args.out else None
    counts = {"frames": 0, "detections": 0, "weapons": 0, "errors": 0}
    try:
        with common.detector_client(args) as client:
            results = client.detect(reader.frames(), annotate=writer is not None, track=args.track)
            with results:
                for result in results:
                    at, original = reader.pending.pop(result.sequence, (0.0, b""))
                    report(result, at, args.json)
                    counts["frames"] += 1
                    counts["detections"] += len(result.detections)
                    counts["weapons"] += sum(d.is_weapon for d in result.detections)
                    counts["errors"] += result.error is not None
                    if writer is not None:
                        # A frame the service could not annotate keeps the video's timing.
                        writer.write(result.annotated_jpeg or original)
    finally:
        reader.close()
        if writer is not None:
            writer.close()
    summary = (
        f"{counts['frames']} frames, {counts['detections']} detections "
        f"({counts['weapons']} weapons), {counts['errors']} frame errors"
    )
    if writer is not None:
        summary += f"; wrote {writer.frames} frames to {writer.path}"
    print(summary, file=sys.stderr)
    if counts["frames"] == 0:
        common.fail(f"no frames could be read from {args.input}")
        return common.EXIT_FAILURE
    return common.EXIT_OK


def report(result: DetectResult, at: float, as_json: bool) -> None:
    if as_json:
        record = common.plain(result)
        record["video_time_s"] = round(at, 3)
        common.print_json(record)
        return
    head = f"frame {result.sequence} [{common.clock(at)}.{int(at * 1000) % 1000:03d}]"
    if result.error is not None:
        print(f"{head}: error {result.error}", flush=True)
    else:
        print(f"{head}: {describe(result.detections)}", flush=True)


def source_row(s: Source) -> list[object]:
    c = s.counters
    fps = f"{c.fps_out:.1f}"
    return [s.id, s.kind, s.mode, s.state, c.subscribers, fps, s.uri or "-", s.last_error]


def sources_ls(args: argparse.Namespace) -> int:
    with common.detector_client(args) as client:
        sources = client.list_sources()
    headers = ["ID", "KIND", "MODE", "STATE", "SUBSCRIBERS", "FPS", "URI", "LAST ERROR"]
    return common.output(args, sources, common.table(headers, [source_row(s) for s in sources]))


def sources_add(args: argparse.Namespace) -> int:
    motion = cli_motion.read_motion(args.motion) if args.motion else None
    with common.detector_client(args) as client:
        source = client.add_source(
            args.id,
            args.kind,
            args.uri,
            loop=args.loop,
            max_fps=args.max_fps,
            width=args.width,
            height=args.height,
            display_name=args.name,
            mode=args.mode,
            record_uri=args.record_uri,
            ptz=args.ptz,
            motion=motion,
        )
    summary = f"added source {source.id} ({source.kind}, {source.mode}, {source.state})"
    return common.output(args, source, summary)


def sources_rm(args: argparse.Namespace) -> int:
    with common.detector_client(args) as client:
        source = client.remove_source(args.id)
    return common.output(args, source, f"removed source {source.id}")


def incident_line(event: IncidentEvent) -> str:
    i = event.incident
    at = i.closed_at if event.kind == "closed" else i.opened_at
    return (
        f"{common.when(at)}  {event.kind.upper():6}  {i.class_name} on {i.source_id} "
        f"(peak {i.peak_confidence:.2f})  {i.id}"
    )


INCIDENT_HEADERS = ["OPENED", "CLOSED", "SOURCE", "CLASS", "PEAK", "ID"]


def incident_row(i: Incident) -> list[object]:
    opened, closed = common.when(i.opened_at), common.when(i.closed_at)
    return [opened, closed, i.source_id, i.class_name, f"{i.peak_confidence:.2f}", i.id]


def incidents_command(args: argparse.Namespace) -> int:
    with common.detector_client(args) as client:
        if args.follow:
            with client.incidents(args.source) as events:
                for event in events:
                    if args.json:
                        common.print_json(event)
                    else:
                        print(incident_line(event), flush=True)
            return common.EXIT_OK
        found = common.collect(
            lambda size, token: client.list_incidents(
                args.source, page_size=size, page_token=token
            ),
            args.limit,
        )
    rows = [incident_row(i) for i in found]
    return common.output(
        args, found, common.table(INCIDENT_HEADERS, rows) if found else "no incidents"
    )
