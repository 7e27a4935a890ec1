"""An incident's evidence package: one ZIP file with its clip, snapshot, record, detections and the
language model's verdict, and a manifest of their sizes and SHA-256, signed with the service's
Ed25519 key.

The format is ``vigil.core.evidence``'s; ``vigil verify`` checks it. The clip is the incident's
recording range joined as the recording's own exports are (the camera's packets, not
re-encoded), so it is what the camera sent; a source that was not recorded gives the annotated
clip the service wrote for it, when there is one; else the package has no clip and its manifest
says why. Everything here blocks (remux, hashing, writing): the caller runs it on a thread.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import json
import pathlib
import shutil
import tempfile
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from detector_service.evidence_key import EvidenceKey
from detector_service.private import private_dir
from detector_service.recording import NotRecorded, RecordingIndex, export_range
from vigil.common.v1 import common_pb2 as cpb
from vigil.core import evidence as fmt
from vigil.detector.v1 import detector_service_pb2 as pb

SERVICE = "vigil-detector"
HASH_CHUNK = 1024 * 1024
DETECTIONS_NOTE = (
    "The detections of the frame that opened the incident, then those of every recorded frame "
    "of the clip's range where the service stored them (ListDetections)."
)


@dataclass(frozen=True)
class Package:
    """A built package on disk, in a private folder of its own (``remove`` deletes both)."""

    path: pathlib.Path
    size: int
    manifest_sha256: str
    file_name: str

    def remove(self) -> None:
        shutil.rmtree(self.path.parent, ignore_errors=True)


@dataclass
class _Contents:
    # (name in the package, bytes in memory or a file on disk)
    files: list[tuple[str, bytes | pathlib.Path]] = field(default_factory=list)
    clip: dict[str, Any] = field(default_factory=dict)


def iso(at: float) -> str:
    moment = datetime.datetime.fromtimestamp(at, datetime.UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="microseconds") + "Z"


def _seconds(ts: Timestamp) -> float:
    return ts.ToNanoseconds() / 1e9


def _version() -> str:
    try:
        return importlib.metadata.version("vigil")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def detections_json(detections: Sequence[cpb.Detection]) -> list[dict[str, Any]]:
    out = []
    for d in detections:
        item: dict[str, Any] = {
            "class_name": d.class_name,
            "class_id": d.class_id,
            "confidence": round(d.confidence, 6),
            "box": {
                "x_min": d.box.x_min,
                "y_min": d.box.y_min,
                "x_max": d.box.x_max,
                "y_max": d.box.y_max,
            },
            "is_weapon": d.is_weapon,
            "model": d.model,
        }
        if d.HasField("track_id"):
            item["track_id"] = d.track_id
        out.append(item)
    return out


def incident_json(incident: pb.Incident) -> dict[str, Any]:
    recording = None
    if incident.HasField("recording"):
        recording = {
            "start": iso(_seconds(incident.recording.start)),
            "end": iso(_seconds(incident.recording.end))
            if incident.recording.HasField("end")
            else None,
        }
    return {
        "id": incident.id,
        "source_id": incident.source_id,
        "class_name": incident.class_name,
        "opened_at": iso(_seconds(incident.opened_at)),
        "closed_at": iso(_seconds(incident.closed_at)) if incident.HasField("closed_at") else None,
        "peak_confidence": round(incident.peak_confidence, 6),
        "zones": list(incident.zones),
        "recording": recording,
        "detections": detections_json(incident.detections),
    }


def verdict_json(incident: pb.Incident) -> dict[str, Any]:
    """What the language model and the operators made of the incident, as exported."""
    verification = None
    if incident.HasField("verification"):
        v = incident.verification
        verification = {
            "verdict": cpb.Verdict.Name(v.verdict).removeprefix("VERDICT_").lower(),
            "sees": v.sees,
            "threat_level": v.threat_level,
            "reason": v.reason,
            "model": v.model,
            "model_seconds": round(v.model_seconds, 3),
        }
    review = None
    if incident.HasField("review"):
        r = incident.review
        review = {
            "decision": pb.ReviewDecision.Name(r.decision).removeprefix("REVIEW_DECISION_").lower(),
            "note": r.note,
            "reviewer": r.reviewer,
            "reviewed_at": iso(_seconds(r.reviewed_at)) if r.HasField("reviewed_at") else None,
        }
    state = pb.VerificationState.Name(incident.verification_state)
    return {
        "verification_state": state.removeprefix("VERIFICATION_STATE_").lower(),
        "verification": verification,
        "review": review,
        "false_alarm": incident.false_alarm,
        "rule_id": incident.rule_id or None,
        "rule_reason": incident.rule_reason or None,
    }


def _frame_json(frame: pb.FrameDetections) -> dict[str, Any]:
    return {
        "at": iso(_seconds(frame.capture_time)),
        "width": frame.width,
        "height": frame.height,
        "detections": detections_json(frame.detections),
    }


def _dump(value: Any) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode()


def _recorded_clip(
    index: RecordingIndex, incident: pb.Incident, max_s: float, folder: pathlib.Path, out: _Contents
) -> None:
    start = _seconds(incident.recording.start)
    still_open = not incident.recording.HasField("end")
    end = time.time() if still_open else _seconds(incident.recording.end)
    cut = end - start > max_s
    if cut:
        end = start + max_s
    try:
        export = export_range(index, incident.source_id, start, end, folder / fmt.CLIP)
    except NotRecorded as exc:
        out.clip = {
            "file": None,
            "note": f"the incident's recording range is no longer recorded ({exc})",
        }
        return
    notes = []
    if still_open:
        notes.append("the incident was still open: the clip ends at the time of the export")
    if cut:
        notes.append(f"cut to the export limit of {max_s:.0f} s from the range's start")
    if export.cut_at_run_change:
        notes.append("ends where the camera's stream parameters changed")
    if export.gaps:
        notes.append("gaps in the recording play as a held picture")
    out.files.append((fmt.CLIP, export.path))
    out.clip = {
        "file": fmt.CLIP,
        "origin": "recording (the camera's stream, not re-encoded)",
        "start": iso(export.start),
        "end": iso(export.end),
        "gaps": [{"start": iso(g.start), "end": iso(g.end)} for g in export.gaps],
        "note": "; ".join(notes) or None,
    }


def _clip(
    index: RecordingIndex, incident: pb.Incident, max_s: float, folder: pathlib.Path, out: _Contents
) -> None:
    if incident.HasField("recording"):
        _recorded_clip(index, incident, max_s, folder, out)
        return
    legacy = pathlib.Path(incident.clip_path) if incident.clip_path else None
    if legacy is not None and legacy.is_file():
        out.files.append((fmt.LEGACY_CLIP, legacy))
        out.clip = {
            "file": fmt.LEGACY_CLIP,
            "origin": "the service's annotated clip around the opening (MJPEG, re-encoded)",
            "note": "the source was not recorded",
        }
        return
    out.clip = {"file": None, "note": "the source was not recorded and no clip was written"}


def _digest(data: bytes | pathlib.Path) -> tuple[int, str]:
    if isinstance(data, bytes):
        return len(data), hashlib.sha256(data).hexdigest()
    digest = hashlib.sha256()
    size = 0
    with data.open("rb") as file:
        while chunk := file.read(HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def manifest(incident: pb.Incident, key: EvidenceKey, contents: _Contents) -> bytes:
    files = []
    for name, data in contents.files:
        size, sha256 = _digest(data)
        files.append({"name": name, "bytes": size, "sha256": sha256})
    return _dump(
        {
            "format": fmt.FORMAT,
            "created_at": iso(time.time()),
            "service": SERVICE,
            "service_version": _version(),
            "incident_id": incident.id,
            "source_id": incident.source_id,
            # For messages only: a verifier checks against the key it trusts, never this one.
            "public_key": key.public.hex(),
            "clip": contents.clip,
            "detections": DETECTIONS_NOTE,
            "files": files,
        }
    )


def _write_zip(path: pathlib.Path, contents: _Contents, signed: bytes, signature: bytes) -> None:
    with zipfile.ZipFile(path, "w") as package:
        for name, data in contents.files:
            # Video and JPEG are compressed already: stored, they cost no CPU to pack or read.
            compress = zipfile.ZIP_DEFLATED if name.endswith(".json") else zipfile.ZIP_STORED
            if isinstance(data, bytes):
                package.writestr(name, data, compress_type=compress)
            else:
                package.write(data, name, compress_type=compress)
        package.writestr(fmt.MANIFEST, signed, compress_type=zipfile.ZIP_DEFLATED)
        package.writestr(fmt.SIGNATURE, signature)


def build_package(
    incident: pb.Incident,
    index: RecordingIndex,
    key: EvidenceKey,
    workdir: pathlib.Path,
    max_clip_s: float,
    frames: Sequence[pb.FrameDetections] = (),
) -> Package:
    """Build ``incident``'s package in a new private folder under ``workdir`` (blocking);
    ``frames`` are the detections of the recorded frames of its range."""
    folder = pathlib.Path(tempfile.mkdtemp(prefix="evidence-", dir=private_dir(workdir)))
    try:
        contents = _Contents()
        _clip(index, incident, max_clip_s, folder, contents)
        if incident.snapshot_jpeg:
            contents.files.append((fmt.SNAPSHOT, incident.snapshot_jpeg))
        contents.files.append((fmt.INCIDENT, _dump(incident_json(incident))))
        opening_and_recorded = [_opening(incident), *(_frame_json(f) for f in frames)]
        contents.files.append(
            (fmt.DETECTIONS, _dump({"note": DETECTIONS_NOTE, "frames": opening_and_recorded}))
        )
        contents.files.append((fmt.VERDICT, _dump(verdict_json(incident))))
        signed = manifest(incident, key, contents)
        path = folder / fmt.file_name(incident.id)
        _write_zip(path, contents, signed, key.sign(signed))
        (folder / fmt.CLIP).unlink(missing_ok=True)  # in the package now
        return Package(
            path,
            path.stat().st_size,
            hashlib.sha256(signed).hexdigest(),
            fmt.file_name(incident.id),
        )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _opening(incident: pb.Incident) -> dict[str, Any]:
    return {
        "at": iso(_seconds(incident.opened_at)),
        "detections": detections_json(incident.detections),
    }
