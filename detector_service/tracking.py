"""Track ids for the boxes of one stream of frames: ByteTrack (roboflow ``supervision``) on time.

ByteTrack counts in frames: a lost track is dropped after ``lost_track_buffer`` frames, and its
own clock ``frame_id`` advances by one per update. Our detection rate is uneven (motion gating
skips static frames, a slow refresh runs while objects are tracked, a file may be paced
differently from a camera), so a budget in frames would keep a track for 0.2 s on a busy source
and for minutes on a quiet one. Converting seconds to frames with a measured rate fails the same
way whenever the rate changes within the budget, and says nothing of a pause in which no frame is
detected at all. So we feed ByteTrack time instead of frame numbers: before each update its
``frame_id`` is set to the frame's time in milliseconds since the tracker's first frame (its
update adds the one), and ``lost_track_buffer`` is the budget in milliseconds, so its own
"lost for longer than max_time_lost" rule reads in time. ByteTrack applies that rule only after
matching a frame, so after a pause a track older than the budget could still be matched; tracks
past the budget are therefore expired before each update as well.

The pin ``supervision>=0.30,<0.31`` keeps these attributes where this module expects them
(``ByteTrack`` is deprecated in 0.28 and gone in 0.31, where the ``trackers`` package takes over).
The Kalman filter still predicts one step per update, whatever the time between them; at the
rates we detect at, an object moves little between updates and IoU matching absorbs the rest.

``supervision`` costs ~1-2 s and ~60 MB to import (it pulls in scipy). It is imported with this
module, at the service's start: loaded with the first object instead, it stalled that source's
frames for as long, and the first frames with objects are the ones that matter.
"""

from __future__ import annotations

import threading
import time
import warnings

import numpy as np
import supervision as sv

from detector_service.detections import Detections, FloatArray, IntArray
from vigil.detector.v1 import detector_service_pb2 as pb

# ByteTrack's own score gates (0.25 to match, +0.1 to start a track, 0.1 to be used at all) would
# leave some published boxes without an id: our confidence and class thresholds already decided
# what is an object, so every box that reaches the tracker may start or continue a track.
ACTIVATION_THRESHOLD = 0.0
# Streams one Detect call may track at once; each holds a tracker.
MAX_STREAMS_PER_CALL = 64


def _bytetrack(lost_ms: int) -> sv.ByteTrack:
    with warnings.catch_warnings():
        # The deprecation notice of 0.28 (see the module docstring): we pin below 0.31.
        warnings.simplefilter("ignore", FutureWarning)
        # frame_rate 30 makes ByteTrack's max_time_lost exactly lost_track_buffer.
        return sv.ByteTrack(
            track_activation_threshold=ACTIVATION_THRESHOLD,
            lost_track_buffer=lost_ms,
            frame_rate=30,
        )


class ObjectTracker:
    """Assigns track ids to one stream's detections, one frame at a time, in time order."""

    def __init__(self, lost_s: float) -> None:
        self.lost_ms = max(int(lost_s * 1000), 1)
        self._bytetrack = _bytetrack(self.lost_ms)
        self._start_ns: int | None = None
        self._tick = 0
        # A live source's stopped run may still finish its last frame while a new run starts.
        self._lock = threading.Lock()

    def update(self, found: Detections, time_ns: int) -> Detections:
        """``found`` with track ids, given the frame's capture time; boxes are never dropped."""
        return found.with_track_ids(self.ids(found.xyxy, found.confidence, time_ns))

    def ids(self, xyxy: FloatArray, confidence: FloatArray, time_ns: int) -> IntArray:
        """The track id of each box of a frame captured at ``time_ns``; -1 where none yet."""
        with self._lock:
            return self._ids(xyxy, confidence, time_ns)

    def _ids(self, xyxy: FloatArray, confidence: FloatArray, time_ns: int) -> IntArray:
        tick = self._to_tick(time_ns)
        bt = self._bytetrack
        bt.tracked_tracks = [t for t in bt.tracked_tracks if tick - t.frame_id <= self.lost_ms]
        bt.lost_tracks = [t for t in bt.lost_tracks if tick - t.frame_id <= self.lost_ms]
        bt.frame_id = tick - 1
        tracked = bt.update_with_detections(
            sv.Detections(
                xyxy=xyxy.astype(np.float32),
                confidence=confidence.astype(np.float32),
                data={"index": np.arange(len(xyxy))},
            )
        )
        # update_with_detections returns only the boxes a confirmed track claims; the index
        # carried in ``data`` puts their ids back on the frame's full list.
        ids = np.full(len(xyxy), -1, np.int32)
        if len(tracked) and tracked.tracker_id is not None:
            ids[np.asarray(tracked.data["index"], np.int64)] = tracked.tracker_id
        return ids

    def _to_tick(self, time_ns: int) -> int:
        # The first frame is tick 1, where ByteTrack confirms tracks at once (later ones need a
        # second sighting); times that do not advance (equal or out of order) still move one.
        if self._start_ns is None:
            self._start_ns = time_ns
        self._tick = max(self._tick + 1, 1 + (time_ns - self._start_ns) // 1_000_000)
        return self._tick


class StreamTrackers:
    """One tracker per stream a Detect call names (its ``source_id``), made at its first frame.

    Responses must be applied one at a time in the order of their requests: the call's consumer,
    which yields them in that order, applies them (detection itself runs several frames at once).
    """

    def __init__(self, lost_s: float) -> None:
        self.lost_s = lost_s
        self._trackers: dict[str, ObjectTracker] = {}

    def apply(self, response: pb.DetectResponse) -> None:
        """Set the track ids of ``response``'s detections, in place.

        Time is the request's capture_time, or now when it has none. A frame whose detection
        failed is skipped: it says nothing of where the objects are. Raises ``ValueError`` for a
        stream without a name or one stream too many.
        """
        stream = response.source_id
        if not stream:
            raise ValueError("tracking needs the stream named in source_id")
        if response.HasField("error"):
            return
        tracker = self._trackers.get(stream)
        if tracker is None:
            if len(self._trackers) >= MAX_STREAMS_PER_CALL:
                raise ValueError(f"at most {MAX_STREAMS_PER_CALL} streams are tracked per call")
            tracker = self._trackers[stream] = ObjectTracker(self.lost_s)
        found = response.detections
        xyxy = np.array(
            [[d.box.x_min, d.box.y_min, d.box.x_max, d.box.y_max] for d in found], np.float32
        ).reshape(-1, 4)
        confidence = np.array([d.confidence for d in found], np.float32)
        if response.HasField("capture_time"):
            time_ns = response.capture_time.ToNanoseconds()
        else:
            time_ns = time.time_ns()
        ids = tracker.ids(xyxy, confidence, time_ns).tolist()
        for detection, track_id in zip(found, ids, strict=True):
            if track_id >= 0:
                detection.track_id = track_id
