"""Continuous recording: segments, their index, retention, exports and snapshots.

Wired into the service by ``detector_service.recorder`` (which sources are recorded, the tee from
the capture, holds and the retention schedule), ``tee.py`` (a source's recording thread) and
``detector_service.recording_rpcs`` (GetCoverage, ExportRecording, GetSnapshot; exports cached
for range reads by ``exports.py``).

Why remux. A camera already spent its own silicon compressing the picture; decoding it alone
costs several times what copying its packets does (``tests/.../recording/remux_cpu.py``), an
encoder more again, and re-encoding loses quality. ``SegmentWriter`` copies the camera's
H.264/H.265 packets into files as they are (PyAV, no codec opened), so a recorded stream costs
about what reading it costs. Only sources with no encoded stream (webcams, the test
pattern) are encoded, once, by ``FrameEncoder`` (libx264 ultrafast with zero latency; MPEG-4
part 2 where FFmpeg lacks libx264), and their packets take the same path.

Why these containers. Segments are fragmented MP4 (``frag_keyframe+empty_moov``), about
``SEGMENT_S`` long and cut only at keyframes, so each one starts decodable and plays alone in a
browser; each keyframe ends a fragment, written at once, so a crash costs at most the open GOP,
and no rewrite happens at close. MPEG-TS would join by concatenation, but browsers do not play
it and it stores no index. Exports are plain MP4 with the index up front (``+faststart``), so a
``<video>`` element can seek with range requests; ``export_range`` joins segments by rewriting
timestamps only, starting at the keyframe at or before the asked start and reporting the range
it actually covers. A joined file holds one decoder configuration, so an export stops where the
stream's parameters changed.

Time. Segments carry wall-clock start and end: the camera's timestamps are mapped to our clock
at the first packet's arrival, then to the least-delayed packet seen (a packet arrives late,
never early); a cut corrects the segments' times when they drift more than ``DRIFT_S`` from
that mapping (a camera's clock runs at its own rate). Segments of one connection share their
boundaries exactly and last exactly their media; anything between two segments is a gap. Each
packet is written when the next one arrives, so the last packet of a connection, which FFmpeg's
RTP depacketiser hands over truncated when a camera dies, is never written. Frames we encode
carry their capture time as their timestamp.

Runs. A run is a sequence of segments with equal stream parameters (codec, size, decoder
configuration): a reconnect continues the run when the parameters are unchanged and starts the
next one otherwise, and only segments of one run can be joined without re-encoding.

Index (the contract: ``contract.py``; SQLite in WAL mode, a 0600 file, for a service on its
own; PostgreSQL, ``postgres_index.py``, for replicas, whose segment files then lie under one
recordings directory they all see). ``segments``: source, run, start, end (epoch seconds),
path, bytes, codec, width, height, params (digest of the run's parameters), writer (the
replica), closed. A segment
is indexed when it opens and joins the recording when it closes; ``SegmentWriter.recover``
closes those a killed writer left open, keeping every fragment that reached the disk.
``holds``: source, start, end, keep_until, reason: an incident's interval and its own retention.
``coverage`` returns the covered intervals and the gaps of a range. ``detections``: source, at
(capture time), frame (a serialized ``FrameDetections``): the boxes of the recorded sources'
detected frames (``detections.py``), deleted with the segment whose time they fall in.

Retention (``enforce``), in this order: holds whose time is over are dropped; each source's
segments older than its days go; then, while all sources together exceed the disk cap, the
oldest segments of any source go. A segment overlapping a live hold is never deleted by either
rule; if only held segments are left over the cap, the report says by how much.
"""

from detector_service.recording.contract import Coverage, Interval, RecordingIndex, Segment
from detector_service.recording.detections import DetectionLog
from detector_service.recording.encoder import FrameEncoder
from detector_service.recording.export import Export, NotRecorded, Snapshot, export_range, snapshot
from detector_service.recording.index import SegmentIndex
from detector_service.recording.retention import RetentionPolicy, RetentionReport, enforce
from detector_service.recording.writer import RecordStats, SegmentWriter, StreamParams

__all__ = [
    "Coverage",
    "DetectionLog",
    "Export",
    "FrameEncoder",
    "Interval",
    "NotRecorded",
    "RecordStats",
    "RecordingIndex",
    "RetentionPolicy",
    "RetentionReport",
    "Segment",
    "SegmentIndex",
    "SegmentWriter",
    "Snapshot",
    "StreamParams",
    "enforce",
    "export_range",
    "snapshot",
]
