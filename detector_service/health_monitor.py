"""Camera health, live: every camera's frames sampled and checked on one worker thread.

Each camera's capture thread offers every frame it reads to its :class:`CameraWatch`, which
takes one every 1/``health_checks_per_s`` seconds, subsamples it to at most ``health_height``
rows (every n-th pixel: the frozen check needs each pixel's own noise, which averaging would
smooth away) and hands that copy to the :class:`HealthMonitor`'s worker; a frame not yet checked
is replaced by a newer one of its camera. The worker runs the checks
(:mod:`detector_service.camera_health`, a few milliseconds a frame), keeps each camera's current
problems for ``Source.camera_problems`` and turns each raise and clear into a ``SourceEvent``
with a JPEG snapshot of its frame, handed to ``on_event``. Nothing of this runs on the event
loop, and a slow check delays no frame: the capture thread only copies a small picture.

Only cameras (webcams and streams) are checked: the test pattern's shapes jump around a flat
gradient, and a file's picture is what its author made it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import uuid
from collections.abc import Callable

import cv2
import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from detector_service.annotate import encode_jpeg
from detector_service.backends.base import Image
from detector_service.camera_health import (
    CameraHealth,
    HealthConfig,
    HealthEvent,
    HealthKind,
    Transition,
)
from detector_service.settings import DetectorSettings
from vigil.detector.v1 import detector_service_pb2 as pb

log = logging.getLogger(__name__)

#: Receives each camera-health event and its snapshot, on the monitor's worker thread.
EventSink = Callable[[pb.SourceEvent, bytes | None], None]

KINDS: dict[HealthKind, pb.SourceEventKind.ValueType] = {
    HealthKind.FROZEN: pb.SOURCE_EVENT_KIND_CAMERA_FROZEN,
    HealthKind.COVERED: pb.SOURCE_EVENT_KIND_CAMERA_COVERED,
    HealthKind.DEFOCUSED: pb.SOURCE_EVENT_KIND_CAMERA_DEFOCUSED,
    HealthKind.MOVED: pb.SOURCE_EVENT_KIND_CAMERA_MOVED,
}
CAMERA_KINDS = frozenset({pb.SOURCE_KIND_WEBCAM, pb.SOURCE_KIND_STREAM})


def health_config(settings: DetectorSettings, ptz: bool) -> HealthConfig:
    return HealthConfig(
        frozen_after_s=settings.health_frozen_after_s,
        covered_after_s=settings.health_covered_after_s,
        covered_max_contrast=settings.health_covered_max_contrast,
        black_max_brightness=settings.health_black_max_brightness,
        defocus_after_s=settings.health_defocus_after_s,
        defocus_ratio=settings.health_defocus_ratio,
        moved_after_s=settings.health_moved_after_s,
        moved_min_similarity=settings.health_moved_min_similarity,
        clear_after_s=settings.health_clear_after_s,
        ptz=ptz,
        ptz_settle_s=settings.health_ptz_settle_s,
    )


class CameraWatch:
    """One camera's checks. ``offer`` runs on its capture thread, ``check`` on the worker."""

    def __init__(
        self, source_id: str, config: HealthConfig, monitor: HealthMonitor, checks_per_s: float
    ) -> None:
        self.source_id = source_id
        self.health = CameraHealth(config)
        #: The problems present now, sorted; replaced whole, so any thread may read it.
        self.problems: tuple[pb.SourceEventKind.ValueType, ...] = ()
        self._monitor = monitor
        self._interval_ns = round(1e9 / checks_per_s)
        self._due_ns = 0
        self._last_at = 0.0

    def configure(self, spec: pb.SourceSpec) -> None:
        """A changed spec (UpdateSource): its ``ptz`` applies from the next check on, and what
        was learnt of the view is kept."""
        self.health.config = dataclasses.replace(self.health.config, ptz=spec.ptz)

    def offer(self, frame: Image, capture_ns: int) -> None:
        """Every captured frame; one per interval is copied (small) for the worker."""
        if capture_ns < self._due_ns:
            return
        self._due_ns = capture_ns + self._interval_ns
        step = max(1, math.ceil(frame.shape[0] / self._monitor.settings.health_height))
        size = (frame.shape[1] // step, frame.shape[0] // step)
        # Every step-th pixel (nearest, not averaged: the frozen check needs each pixel's own
        # noise), in a new array even at step 1: the processing thread draws into the frame.
        # About 1 ms from 1080p, a quarter of numpy's strided copy.
        small = cv2.resize(frame, size, interpolation=cv2.INTER_NEAREST)
        self._monitor.submit(self, np.asarray(small, np.uint8), capture_ns)

    def check(self, frame: Image, capture_ns: int) -> list[HealthEvent]:
        # The wall clock may step back (NTP): the checks' time only goes forward.
        self._last_at = max(capture_ns / 1e9, self._last_at)
        events = self.health.update(frame, self._last_at)
        self.problems = tuple(sorted(KINDS[kind] for kind in self.health.active))
        return events


class HealthMonitor:
    """The service's camera-health worker; ``watch`` gives each camera its :class:`CameraWatch`.

    ``on_event`` (thread-safe, quick) gets each raise and clear with its snapshot; events are
    logged either way.
    """

    def __init__(self, settings: DetectorSettings, on_event: EventSink | None = None) -> None:
        self.settings = settings
        self.on_event = on_event
        self._cond = threading.Condition()
        # Cameras with a frame waiting, oldest first; a newer frame replaces its camera's.
        self._pending: dict[CameraWatch, tuple[Image, int]] = {}
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="camera-health", daemon=True)
        self._thread.start()

    def watch(self, spec: pb.SourceSpec) -> CameraWatch | None:
        """The checks of a source, or None for one that is not a camera or when checks are off."""
        rate = self.settings.health_checks_per_s
        if spec.kind not in CAMERA_KINDS or rate <= 0:
            return None
        return CameraWatch(spec.id, health_config(self.settings, spec.ptz), self, rate)

    def submit(self, watch: CameraWatch, frame: Image, capture_ns: int) -> None:
        with self._cond:
            if self._closed:
                return
            self._pending.pop(watch, None)  # to the back of the line, with its newest frame
            self._pending[watch] = (frame, capture_ns)
            self._cond.notify()

    def close(self) -> None:
        """Stop the worker (blocking for up to a check: call off the event loop)."""
        with self._cond:
            self._closed = True
            self._pending.clear()
            self._cond.notify()
        self._thread.join(5.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                watch = next(iter(self._pending))
                frame, capture_ns = self._pending.pop(watch)
            try:
                events = watch.check(frame, capture_ns)
            except Exception:
                # One camera's odd frame must not end the checks of all of them.
                log.exception("camera health check of %s failed", watch.source_id)
                continue
            for event in events:
                self._emit(watch.source_id, event)

    def _emit(self, source_id: str, event: HealthEvent) -> None:
        message = source_event(source_id, event)
        name = pb.SourceEventKind.Name(message.kind).removeprefix("SOURCE_EVENT_KIND_").lower()
        if message.cleared:
            log.info("source %s: %s cleared (%s)", source_id, name, message.detail)
        else:
            log.warning("source %s: %s (%s)", source_id, name, message.detail)
        if self.on_event is None:
            return
        try:
            snapshot = encode_jpeg(event.frame, self.settings.jpeg_quality)
            self.on_event(message, snapshot)
        except Exception:
            log.exception("camera health event of %s could not be handed on", source_id)


def source_event(source_id: str, event: HealthEvent) -> pb.SourceEvent:
    at = Timestamp()
    at.FromNanoseconds(round(event.at * 1e9))
    return pb.SourceEvent(
        id=uuid.uuid4().hex,
        source_id=source_id,
        kind=KINDS[event.kind],
        at=at,
        cleared=event.transition is Transition.CLEARED,
        detail=describe(event),
    )


def describe(event: HealthEvent) -> str:
    """A short human text with the figure that decided it."""
    v = event.values
    lasted = event.at - event.started_at
    if "relearnt" in v:
        return f"cleared after {lasted:.0f} s: the new view is the camera's reference now"
    if event.kind is HealthKind.FROZEN:
        figure = f"{v['changed_fraction']:.1%} of the pixels changed between checks"
    elif event.kind is HealthKind.COVERED:
        figure = f"brightness {v['brightness']:.0f}/255, contrast {v['contrast']:.1f}"
    elif event.kind is HealthKind.DEFOCUSED:
        ratio = v["sharpness"] / v["baseline"] if v["baseline"] > 0 else 0.0
        figure = f"sharpness {ratio:.0%} of the camera's baseline"
    else:
        figure = f"the picture's edges {v['similarity']:.0%} like its reference view"
        if "shift_x" in v:
            dx, dy = v["shift_x"], v["shift_y"]
            horizontal = f"{abs(dx):.0f} px {'left' if dx < 0 else 'right'}"
            figure += f", shifted {horizontal} and {abs(dy):.0f} px {'up' if dy < 0 else 'down'}"
    if event.transition is Transition.CLEARED:
        return f"cleared after {lasted:.0f} s: {figure}"
    return f"for {lasted:.0f} s: {figure}"
