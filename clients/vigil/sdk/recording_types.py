"""Plain values of a source's recording: time ranges, coverage, exports, snapshots and the
detections stored with it.

Times are seconds since the epoch (floats), as everywhere in the SDK; each value keeps the
message it was made from as ``proto``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.sdk.common import Detection, detections, optional_seconds, seconds


@dataclass(frozen=True)
class TimeRange:
    """[start, end); ``end`` None: still going on (a recording in progress, an open incident)."""

    start: float
    end: float | None

    @classmethod
    def from_proto(cls, m: pb.TimeRange) -> TimeRange:
        return cls(seconds(m.start), optional_seconds(m, "end"))


@dataclass(frozen=True)
class Coverage:
    """What of a window a source's recording covers, oldest first; between two ranges is a gap."""

    ranges: tuple[TimeRange, ...]
    # Bytes of recording kept for the source.
    bytes: int
    proto: pb.GetCoverageResponse = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, m: pb.GetCoverageResponse) -> Coverage:
        return cls(tuple(TimeRange.from_proto(r) for r in m.ranges), m.bytes, m)


@dataclass(frozen=True)
class ExportInfo:
    """What an exported MP4 covers: from the keyframe at or before the asked start to the end of
    what is recorded before the asked end; gaps inside play as a held picture."""

    start: float
    end: float
    size: int
    content_type: str
    gaps: tuple[TimeRange, ...]
    proto: pb.ExportInfo = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, m: pb.ExportInfo) -> ExportInfo:
        return cls(
            start=seconds(m.covered.start),
            end=seconds(m.covered.end),
            size=m.size,
            content_type=m.content_type,
            gaps=tuple(TimeRange.from_proto(g) for g in m.gaps),
            proto=m,
        )


@dataclass(frozen=True)
class Recording:
    """An export: its description, and its bytes (``data``) or the file they went to (``path``)."""

    info: ExportInfo
    data: bytes
    path: str | None


@dataclass(frozen=True)
class Snapshot:
    """One picture of a source: from its recording, or its newest live frame."""

    jpeg: bytes
    at: float
    width: int
    height: int
    proto: pb.GetSnapshotResponse = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, m: pb.GetSnapshotResponse) -> Snapshot:
        return cls(m.jpeg, seconds(m.at), m.width, m.height, m)


@dataclass(frozen=True)
class FrameDetections:
    """The objects found on one detected frame of a recording (``at``: its capture time), in
    pixels of a ``width`` x ``height`` frame; empty where the objects of the frame before are
    gone."""

    at: float
    width: int
    height: int
    detections: tuple[Detection, ...]
    proto: pb.FrameDetections = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, m: pb.FrameDetections) -> FrameDetections:
        return cls(seconds(m.capture_time), m.width, m.height, detections(m.detections), m)


@dataclass(frozen=True)
class RecordedDetections:
    """The detected frames of a range of a source's recording, oldest first (frames the motion
    gate skipped show what the frame before them shows)."""

    frames: tuple[FrameDetections, ...]
    proto: pb.ListDetectionsResponse = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, m: pb.ListDetectionsResponse) -> RecordedDetections:
        return cls(tuple(FrameDetections.from_proto(f) for f in m.frames), m)


def export_item(m: pb.ExportRecordingResponse) -> ExportInfo | bytes | None:
    """An export's messages: its ExportInfo first, then the file's bytes in chunks."""
    which = m.WhichOneof("part")
    if which == "info":
        return ExportInfo.from_proto(m.info)
    if which == "chunk":
        return m.chunk
    return None
