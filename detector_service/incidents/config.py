"""What the incident tracker is configured with, and the parts of other stages it calls
(the recorder, the language model's verifier), as protocols so it depends on none of them."""

from __future__ import annotations

import pathlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from detector_service.subscribers import WeaponCrop
from vigil.detector.v1 import detector_service_pb2 as pb


@dataclass(frozen=True, slots=True)
class IncidentConfig:
    # The SQLite history, when no other store is given (the server keeps it in its data_dir).
    db_path: pathlib.Path
    # A class opens an incident when seen in min_frames of the last `window` frames (N of M).
    min_frames: int = 3
    window: int = 5
    cooldown_s: float = 30.0
    close_after_s: float = 5.0
    webhook_url: str | None = None
    webhook_retries: int = 3
    # Clips are recorded only when set: pre_s seconds before the opening frame, post_s from it.
    clip_dir: pathlib.Path | None = None
    pre_s: float = 3.0
    post_s: float = 3.0
    # Events each gRPC subscriber may have waiting, and events waiting for the webhook.
    subscriber_queue: int = 256
    webhook_queue: int = 100
    # The detector's track_lost_s: how long a track id may go unseen and still come back.
    track_lost_s: float = 5.0

    def __post_init__(self) -> None:
        if not 1 <= self.min_frames <= self.window:
            raise ValueError("need 1 <= min_frames <= window")
        times = (self.cooldown_s, self.close_after_s, self.pre_s, self.post_s, self.track_lost_s)
        if min(times) < 0:
            raise ValueError("durations must not be negative")
        if self.subscriber_queue < 1 or self.webhook_queue < 1 or self.webhook_retries < 0:
            raise ValueError("queues need room for one event; retries must not be negative")


class IncidentRecording(Protocol):
    """The recorder's part in incidents (detector_service/recorder.py): it gives an incident of a
    recorded source its ``recording`` range and keeps that part of the recording. Called under
    the tracker's lock; must not block."""

    def opened(self, incident: pb.Incident) -> None: ...

    def closed(self, incident: pb.Incident) -> None: ...


class IncidentVerifier(Protocol):
    """The language model's check of new incidents (detector_service/verification.py). Called
    under the tracker's lock; must not block."""

    def frame(self, source_id: str, time_ns: int, jpeg: bytes) -> None:
        """A processed frame that shows a weapon, kept a moment for the pictures of an incident."""

    def forget(self, source_id: str) -> None:
        """The source stopped: its frames say nothing about its next incident."""

    def opened(self, incident: pb.Incident, crops: Sequence[WeaponCrop]) -> None:
        """``incident`` (a copy, PENDING) opened on a frame whose weapons are ``crops``."""
