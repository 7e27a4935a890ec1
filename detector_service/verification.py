"""Verified weapon alerts: the language model checks each weapon incident as it opens.

When the tracker opens an incident it marks it PENDING and hands it here with the pixels of its
weapon boxes, copied from the frame as captured (full resolution of the detection stream, before
boxes were drawn). The pictures sent to the analyzer (``AsyncAnalyzerClient.verify_incident``):
the snapshot, a crop of each weapon box (most confident first) and a few of the frames that led
up to the opening, at most ``verification_max_pictures`` in all. Cropping and JPEG encoding run
in a thread, never on the event loop; the tracker's calls here only queue work.

The verdict goes back through ``IncidentTracker.settle``: stored with the incident, emitted as a
VERIFIED event (alerting or not under the source's policy, ``alerts.py``); a rejected incident
is kept and marked ``false_alarm`` (unless an operator confirmed it).

Nothing here stops the detector. While the analyzer is unreachable (or answers a retryable
error) the incident stays PENDING and is tried again with backoff; one still unverified
``verification_give_up_s`` after it opened is SKIPPED (and alerts under WHEN_CONFIRMED: a weapon
nobody could check must reach someone). The work queue holds ``verification_queue`` incidents;
when it is full a new incident is not dropped but left PENDING in the store, where a sweep every
``verification_retry_max_s`` finds it (as the first sweep finds the incidents a restart left
PENDING); those are checked on their snapshot alone, the frames and raw pixels being gone.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from detector_service.backends.base import Image
from detector_service.frame_work import weapon_crops
from detector_service.incidents.tracker import IncidentTracker
from detector_service.settings import DetectorSettings
from detector_service.subscribers import WeaponCrop
from vigil.core.backoff import Backoff
from vigil.core.errors import VigilError
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.sdk import (
    AsyncAnalyzerClient,
    ClientOptions,
    Picture,
    Sampling,
    Verification,
    with_tls,
)

log = logging.getLogger(__name__)

# Frames of a source that showed a weapon, kept for the pictures of its next incident: those of
# the last RING_S seconds, at most RING_FRAMES (references to JPEGs the pipeline made anyway),
# forgotten when the source stops.
RING_S = 3.0
RING_FRAMES = 32
# The first sweep after a start looks this far back for incidents left PENDING.
RECOVER_S = 86400.0
# A sweep leaves incidents younger than this to the tracker's own hand-over.
SWEEP_MIN_AGE_S = 5.0
CROP_QUALITY = 90


@dataclass(slots=True)
class _Work:
    incident: pb.Incident  # snapshot included
    crops: Sequence[WeaponCrop]
    frames: list[tuple[int, bytes]]


class Verifier:
    """Checks new weapon incidents with the analyzer. Construct and ``start`` on the event loop;
    it installs itself as ``tracker.verifier``."""

    def __init__(self, settings: DetectorSettings, tracker: IncidentTracker) -> None:
        self.settings = settings
        self.tracker = tracker
        token = settings.analyzer_token or settings.token
        options = ClientOptions(
            settings.analyzer_url, token=token.get_secret_value() if token else None, timeout_s=None
        )
        self.client = AsyncAnalyzerClient(with_tls(options, settings.analyzer_tls))
        self.sampling: Sampling | None = None
        if settings.verification_temperature is not None or settings.verification_seed is not None:
            self.sampling = Sampling(settings.verification_temperature, settings.verification_seed)
        self._give_up_ns = int(settings.verification_give_up_s * 1e9)
        # Shared by the workers: an unreachable analyzer is unreachable for all of them.
        self._backoff = Backoff(
            initial_s=settings.verification_retry_initial_s,
            max_s=settings.verification_retry_max_s,
        )
        self._queue: asyncio.Queue[_Work] = asyncio.Queue(settings.verification_queue)
        # Incidents queued or being checked (event loop only).
        self._busy: set[str] = set()
        # Recent frames per source; touched under the tracker's lock, and by ``opened`` with it.
        self._lock = threading.Lock()
        self._rings: dict[str, collections.deque[tuple[int, bytes]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        #: Verdicts received; incidents left to the sweep by a full queue; SKIPPED incidents.
        self.verified = 0
        self.deferred = 0
        self.skipped = 0
        tracker.verifier = self

    def waiting(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        workers = [self._worker() for _ in range(self.settings.verification_workers)]
        self._tasks = [asyncio.create_task(w) for w in (*workers, self._sweeper())]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.client.close()

    # --- the tracker's side: processing threads, under its lock -------------------------------

    def frame(self, source_id: str, time_ns: int, jpeg: bytes) -> None:
        with self._lock:
            ring = self._rings.get(source_id)
            if ring is None:
                ring = self._rings[source_id] = collections.deque(maxlen=RING_FRAMES)
            ring.append((time_ns, jpeg))
            while ring and time_ns - ring[0][0] > RING_S * 1e9:
                ring.popleft()

    def forget(self, source_id: str) -> None:
        with self._lock:
            self._rings.pop(source_id, None)

    def opened(self, incident: pb.Incident, crops: Sequence[WeaponCrop]) -> None:
        opened_ns = incident.opened_at.ToNanoseconds()
        oldest_ns = opened_ns - RING_S * 1e9
        with self._lock:
            ring = self._rings.get(incident.source_id, ())
            earlier = [f for f in ring if oldest_ns <= f[0] < opened_ns]
        work = _Work(incident, tuple(crops), _spread(earlier, self.settings.verification_frames))
        with contextlib.suppress(RuntimeError):  # the loop closed: the sweep finds it next start
            self.tracker.loop.call_soon_threadsafe(self._offer, work)

    # --- event loop ----------------------------------------------------------------------------

    def _offer(self, work: _Work) -> None:
        incident_id = work.incident.id
        if incident_id in self._busy:
            return
        try:
            self._queue.put_nowait(work)
        except asyncio.QueueFull:
            self.deferred += 1
            log.warning(
                "verification queue full (%d): incident %s stays PENDING for the retry sweep",
                self._queue.maxsize,
                incident_id,
            )
            return
        self._busy.add(incident_id)

    async def _worker(self) -> None:
        while True:
            work = await self._queue.get()
            try:
                await self._verify(work)
            except Exception:
                log.exception("verification of incident %s failed", work.incident.id)
            finally:
                self._busy.discard(work.incident.id)

    async def _verify(self, work: _Work) -> None:
        incident = work.incident
        pictures = await asyncio.to_thread(
            pictures_of, work, self.settings.verification_max_pictures
        )
        while True:
            left_s = (incident.opened_at.ToNanoseconds() + self._give_up_ns - time.time_ns()) / 1e9
            if left_s <= 0:
                self._skip(incident.id, "unverified for too long")
                return
            try:
                verdict = await self.client.verify_incident(
                    incident_id=incident.id,
                    source_id=incident.source_id,
                    class_name=incident.class_name,
                    pictures=pictures,
                    sampling=self.sampling,
                    timeout_s=self.settings.verification_timeout_s,
                )
            except VigilError as exc:
                if not exc.retryable:
                    self._skip(incident.id, f"the analyzer refused it: {exc}")
                    return
                problem = str(exc)
            except Exception as exc:  # anything else is retried, never the end of the worker
                problem = f"{type(exc).__name__}: {exc}"
            else:
                self._backoff.reset()
                self.verified += 1
                log.info("incident %s verified: %s", incident.id, verdict.verdict)
                self.tracker.settle(incident.id, _done(verdict))
                return
            delay = min(self._backoff.next(), left_s)
            log.warning(
                "verifying incident %s: %s; retrying in %.1f s", incident.id, problem, delay
            )
            await asyncio.sleep(delay)

    def _skip(self, incident_id: str, why: str) -> None:
        self.skipped += 1
        log.warning("incident %s not verified: %s", incident_id, why)
        self.tracker.settle(incident_id, _skipped)

    async def _sweeper(self) -> None:
        """Incidents PENDING in the store that nobody is checking: left by a restart (the first
        sweep) or by a full queue."""
        # The first sweep: what earlier runs left, none of this run's incidents (handed over as
        # they open, with their pixels).
        since_s, before_ns = RECOVER_S, time.time_ns()
        every_s = self.settings.verification_retry_max_s
        while True:
            try:
                await self._sweep(since_s, before_ns)
            except Exception:
                log.exception("verification sweep failed")
            await asyncio.sleep(every_s)
            since_s = self.settings.verification_give_up_s + 2 * every_s
            before_ns = time.time_ns() - int(SWEEP_MIN_AGE_S * 1e9)

    async def _sweep(self, since_s: float, before_ns: int) -> None:
        now_ns = time.time_ns()
        found = await self.tracker.store.opened_since(now_ns - int(since_s * 1e9))
        for incident in found:
            if incident.verification_state != pb.VERIFICATION_STATE_PENDING:
                continue
            if incident.id in self._busy or incident.opened_at.ToNanoseconds() >= before_ns:
                continue
            if now_ns - incident.opened_at.ToNanoseconds() > self._give_up_ns:
                self._skip(incident.id, "unverified for too long")
                continue
            self._offer(_Work(incident, (), []))


class VerificationCollector(Collector):
    """The verifier's counts, read when Prometheus scrapes."""

    def __init__(self, verifier: Verifier) -> None:
        self.verifier = verifier

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        v = self.verifier
        yield CounterMetricFamily(
            "vigil_incident_verdicts", "Verdicts of the language model received", value=v.verified
        )
        yield CounterMetricFamily(
            "vigil_incident_verifications_skipped",
            "Incidents left unverified (given up, or refused by the analyzer)",
            value=v.skipped,
        )
        yield CounterMetricFamily(
            "vigil_incident_verifications_deferred",
            "Incidents left PENDING for the retry sweep by a full verification queue",
            value=v.deferred,
        )
        yield GaugeMetricFamily(
            "vigil_incident_verifications_waiting",
            "Incidents queued for verification",
            value=v.waiting(),
        )


def _done(verdict: Verification) -> Callable[[pb.Incident], None]:
    def change(incident: pb.Incident) -> None:
        incident.verification_state = pb.VERIFICATION_STATE_DONE
        incident.verification.CopyFrom(verdict.to_proto())
        # The model's rejection marks a false alarm; an operator's confirmation overrides it.
        confirmed = incident.review.decision == pb.REVIEW_DECISION_CONFIRMED
        if verdict.verdict == "rejected" and not confirmed:
            incident.false_alarm = True

    return change


def _skipped(incident: pb.Incident) -> None:
    incident.verification_state = pb.VERIFICATION_STATE_SKIPPED


def _spread(frames: list[tuple[int, bytes]], count: int) -> list[tuple[int, bytes]]:
    """``count`` of ``frames`` spread evenly over them, the newest included."""
    if count <= 0 or not frames:
        return []
    if len(frames) <= count:
        return frames
    step = len(frames) / count
    return [frames[len(frames) - 1 - int(i * step)] for i in reversed(range(count))]


# --- pictures: in a thread ---------------------------------------------------------------------


def pictures_of(work: _Work, most: int) -> list[Picture]:
    """The snapshot, crops of the weapon boxes (most confident first), then earlier frames."""
    incident = work.incident
    pictures = [Picture(incident.snapshot_jpeg, "snapshot: the frame the incident opened on")]
    crops = work.crops or _crops_of_snapshot(incident)
    crops = sorted(crops, key=lambda c: -c.detection.confidence)
    # Room for one crop at least, when there is one; the frames nearest the opening first.
    frame_count = max(0, min(len(work.frames), most - 1 - min(1, len(crops))))
    frames = work.frames[len(work.frames) - frame_count :]
    for crop in crops[: most - 1 - frame_count]:
        d = crop.detection
        ok, buf = cv2.imencode(".jpg", crop.pixels, [cv2.IMWRITE_JPEG_QUALITY, CROP_QUALITY])
        if ok:
            label = f"crop of {d.class_name} ({d.confidence:.2f}) at full resolution"
            pictures.append(Picture(buf.tobytes(), label))
    opened_ns = incident.opened_at.ToNanoseconds()
    for time_ns, jpeg in frames:
        pictures.append(Picture(jpeg, f"{(opened_ns - time_ns) / 1e9:.1f} s before"))
    return pictures


def _crops_of_snapshot(incident: pb.Incident) -> list[WeaponCrop]:
    """Crops from the stored snapshot, for an incident whose raw pixels are gone (a restart)."""
    if not incident.snapshot_jpeg:
        return []
    image = cv2.imdecode(np.frombuffer(incident.snapshot_jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return []
    ours = [d for d in incident.detections if d.class_name == incident.class_name]
    return list(weapon_crops(cast(Image, image), ours))
