"""Weapon incidents: opened from a few frames' evidence, closed after an absence, then cooled down.

Per source and weapon class: the class seen in at least ``min_frames`` of the source's last
``window`` processed frames opens an incident (snapshot: that frame's annotated JPEG); every
frame that still shows it raises the peak confidence; once it has been unseen for
``close_after_s`` the incident closes, and the same class on the same source cannot open another
for ``cooldown_s``. All times are the frames' own ``time_ns``, never the wall clock.

Incidents follow tracks (``Detection.track_id``): a track seen with an open incident's class
belongs to it and never counts towards another, so a weapon carried across the scene (even hidden
past ``close_after_s`` on the way) is one incident, and one lying still does not alert again once
its incident closes. A track unseen for ``track_lost_s`` has ended and is forgotten.

``observe`` runs on the sources' processing threads and only ever queues work: events go to the
gRPC subscribers through ``loop.call_soon_threadsafe``, to the history (SQLite or PostgreSQL)
through its writer thread, to the webhook through its bounded queue, and clips to their writer
thread. Nothing in it waits for the disk or the network. With replicas on PostgreSQL the store
also announces each event to the other replicas, whose streams get it through ``relay``.

Each subscriber has a bounded queue (``subscriber_queue`` events). Incident events are rare, so a
subscriber that far behind is stuck: further events for it are dropped, counted in its
``dropped`` and logged, rather than growing memory without end. The history keeps them all.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from google.protobuf.timestamp_pb2 import Timestamp

from detector_service import alerts
from detector_service.incidents.clips import ClipRecorder
from detector_service.incidents.config import IncidentConfig, IncidentRecording, IncidentVerifier
from detector_service.incidents.keeping import IncidentKeeping
from detector_service.incidents.review import apply_review
from detector_service.incidents.store import IncidentStore
from detector_service.incidents.subscription import IncidentSubscription
from detector_service.incidents.webhook import Webhook
from detector_service.subscribers import WeaponCrop
from vigil.common.v1 import common_pb2
from vigil.detector.v1 import detector_service_pb2 as pb

log = logging.getLogger(__name__)

OPENED = pb.INCIDENT_EVENT_TYPE_OPENED
CLOSED = pb.INCIDENT_EVENT_TYPE_CLOSED
VERIFIED = pb.INCIDENT_EVENT_TYPE_VERIFIED
REVIEWED = pb.INCIDENT_EVENT_TYPE_REVIEWED

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


@dataclass(slots=True)
class _Open:
    incident: pb.Incident
    last_seen_ns: int


# Where an object of a source is: the areas it is in, or None when the source's incident rule is
# limited to zones it is not in (``zones.Zones.place``).
Placement = Callable[[str, common_pb2.Detection], tuple[str, ...] | None]
# A weapon seen in a frame: its class and its track id (None before the tracker confirms it).
Sighting = tuple[str, int | None]


@dataclass(slots=True)
class _Source:
    # The weapon sightings of each of the last `window` frames.
    window: collections.deque[frozenset[Sighting]]
    open: dict[str, _Open] = field(default_factory=dict)
    cooldown_until_ns: dict[str, int] = field(default_factory=dict)
    # Tracks that belonged to an incident, with the time each was last seen.
    alerted: dict[int, int] = field(default_factory=dict)
    last_ns: int = 0


class IncidentTracker:
    """Turns per-frame detections into incidents. Owns (and closes) its store and webhook."""

    def __init__(
        self,
        config: IncidentConfig,
        store: IncidentKeeping,
        loop: asyncio.AbstractEventLoop,
        webhook: Webhook | None = None,
        recording: IncidentRecording | None = None,
    ) -> None:
        self.config = config
        self.recording = recording
        self.store = store
        self.loop = loop
        self.webhook = webhook
        self._close_after_ns = int(config.close_after_s * 1e9)
        self._cooldown_ns = int(config.cooldown_s * 1e9)
        self._track_lost_ns = int(config.track_lost_s * 1e9)
        # One lock for all sources: held for microseconds, once per frame.
        self._lock = threading.Lock()
        self._sources: dict[str, _Source] = {}
        self._open_by_id: dict[str, _Open] = {}
        self._closed = False
        #: Incidents opened since start (a metric).
        self.opened = 0
        # Touched on the event loop only.
        self._subscriptions: set[IncidentSubscription] = set()
        #: Where objects are; a weapon the rule leaves out (outside the incident zones) is not seen.
        self.place: Placement | None = None
        self.clips: ClipRecorder | None = None
        #: Verifies new incidents; their events say PENDING from the opening on.
        self.verifier: IncidentVerifier | None = None
        #: A source's alert policy, resolved (``alerts.resolve``): which events alert people.
        self.alert_policy: Callable[[str], alerts.Policy] = lambda _: pb.ALERT_POLICY_AT_OPENING
        if config.clip_dir is not None:
            self.clips = ClipRecorder(config.clip_dir, config.pre_s, config.post_s, self._clip_done)

    # --- processing threads --------------------------------------------------------------------

    def observe(
        self,
        source_id: str,
        detections: Sequence[common_pb2.Detection],
        jpeg: bytes,
        time_ns: int,
        crops: Sequence[WeaponCrop] = (),
    ) -> None:
        """Account for one processed frame of ``source_id`` (``crops``: its weapons' pixels);
        never blocks on I/O."""
        weapons: list[common_pb2.Detection] = []
        zones: dict[str, set[str]] = collections.defaultdict(set)
        for d in (d for d in detections if d.is_weapon):
            where = () if self.place is None else self.place(source_id, d)
            if where is not None:
                weapons.append(d)
                zones[d.class_name].update(where)
        peaks: dict[str, float] = {}
        for d in weapons:
            peaks[d.class_name] = max(peaks.get(d.class_name, 0.0), d.confidence)
        sightings = frozenset(
            (d.class_name, d.track_id if d.HasField("track_id") else None) for d in weapons
        )
        with self._lock:
            if self._closed:
                return
            src = self._sources.get(source_id)
            if src is None:
                src = self._sources[source_id] = _Source(
                    collections.deque(maxlen=self.config.window)
                )
            src.last_ns = time_ns
            src.window.append(sightings)
            if self.verifier is not None and jpeg and weapons:
                self.verifier.frame(source_id, time_ns, jpeg)
            # A track unseen for track_lost_s has ended: forgotten before this frame counts.
            lost = [t for t, seen in src.alerted.items() if time_ns - seen > self._track_lost_ns]
            for track_id in lost:
                del src.alerted[track_id]
            for class_name, state in list(src.open.items()):
                if class_name in peaks:
                    state.last_seen_ns = time_ns
                    incident = state.incident
                    incident.peak_confidence = max(incident.peak_confidence, peaks[class_name])
                elif time_ns - state.last_seen_ns >= self._close_after_ns:
                    self._close(src, class_name, state.last_seen_ns + self._close_after_ns)
            for class_name, peak in peaks.items():
                if class_name in src.open:
                    continue
                if time_ns < src.cooldown_until_ns.get(class_name, time_ns):
                    continue
                # Evidence for a new incident: sightings of no track that belonged to one.
                seen = sum(
                    any(c == class_name and t not in src.alerted for c, t in frame)
                    for frame in src.window
                )
                if seen >= self.config.min_frames:
                    inside = sorted(zones[class_name])
                    chosen = [c for c in crops if c.detection.class_name == class_name]
                    self._open(
                        src, source_id, class_name, peak, weapons, jpeg, time_ns, inside, chosen
                    )
            self._note_tracks(src, sightings, time_ns)
            if self.clips is not None:
                self.clips.frame(source_id, time_ns, jpeg)

    def _note_tracks(self, src: _Source, sightings: frozenset[Sighting], time_ns: int) -> None:
        """Tracks with an open incident's class join it; alerted tracks seen stay alerted."""
        for class_name, track_id in sightings:
            if track_id is not None and (class_name in src.open or track_id in src.alerted):
                src.alerted[track_id] = time_ns

    def end_source(self, source_id: str) -> None:
        """The source stopped: close its open incidents at its last frame and finish its clips.

        Without this an incident stays open until the source's frames resume, since only frames
        move its clock. Any thread.
        """
        with self._lock:
            if not self._closed:
                self._end_source(source_id)

    def _end_source(self, source_id: str) -> None:
        src = self._sources.get(source_id)
        if src is not None:
            for class_name, state in list(src.open.items()):
                closed_ns = min(state.last_seen_ns + self._close_after_ns, src.last_ns)
                self._close(src, class_name, closed_ns)
            # Sightings from before a stop say nothing about the frames after it.
            src.window.clear()
        if self.verifier is not None:
            self.verifier.forget(source_id)
        if self.clips is not None:
            self.clips.finish(source_id)

    def _open(
        self,
        src: _Source,
        source_id: str,
        class_name: str,
        peak: float,
        weapons: list[common_pb2.Detection],
        jpeg: bytes,
        time_ns: int,
        zones: Sequence[str] = (),
        crops: Sequence[WeaponCrop] = (),
    ) -> None:
        incident = pb.Incident(
            id=uuid.uuid4().hex,
            zones=zones,
            source_id=source_id,
            class_name=class_name,
            opened_at=_timestamp(time_ns),
            peak_confidence=peak,
            detections=weapons,
            snapshot_jpeg=jpeg,
        )
        state = _Open(incident, time_ns)
        self.opened += 1
        src.open[class_name] = state
        self._open_by_id[incident.id] = state
        log.info("incident %s opened: %s on %s (%.2f)", incident.id, class_name, source_id, peak)
        if self.recording is not None:
            self.recording.opened(incident)
        # A recorded source's clip is its recording's range: no separate clip is encoded.
        if self.clips is not None and not incident.HasField("recording"):
            self.clips.start(source_id, incident.id, time_ns)
        if self.verifier is not None:
            incident.verification_state = pb.VERIFICATION_STATE_PENDING
        self._emit(OPENED, incident)
        if self.verifier is not None:
            copied = pb.Incident()
            copied.CopyFrom(incident)
            self.verifier.opened(copied, crops)

    def _close(self, src: _Source, class_name: str, closed_ns: int) -> None:
        state = src.open.pop(class_name)
        incident = state.incident
        self._open_by_id.pop(incident.id, None)
        incident.closed_at.CopyFrom(_timestamp(closed_ns))
        if self.recording is not None:
            self.recording.closed(incident)
        src.cooldown_until_ns[class_name] = closed_ns + self._cooldown_ns
        # The sightings that made this incident must not count towards the next one.
        frames = [frozenset(s for s in frame if s[0] != class_name) for frame in src.window]
        src.window.clear()
        src.window.extend(frames)
        log.info("incident %s closed (peak %.2f)", incident.id, incident.peak_confidence)
        self._emit(CLOSED, incident)

    def open_rule_incident(self, incident: pb.Incident, time_ns: int) -> None:
        """Open an incident a watch rule's check found (``watch_rules.py`` decides when one opens
        and closes); it is stored, streamed, recorded and posted like a weapon's. Any thread."""
        with self._lock:
            if self._closed:
                return
            self.opened += 1
            log.info("incident %s opened: rule %s on %s", incident.id, incident.rule_id,
                     incident.source_id)  # fmt: skip
            if self.recording is not None:
                self.recording.opened(incident)
            if self.clips is not None and not incident.HasField("recording"):
                self.clips.start(incident.source_id, incident.id, time_ns)
            self._emit(OPENED, incident)

    def close_rule_incident(self, incident: pb.Incident, closed_ns: int) -> None:
        """Close an incident ``open_rule_incident`` opened. Any thread."""
        with self._lock:
            if self._closed:
                return
            incident.closed_at.CopyFrom(_timestamp(closed_ns))
            if self.recording is not None:
                self.recording.closed(incident)
            log.info("incident %s closed (rule %s)", incident.id, incident.rule_id)
            self._emit(CLOSED, incident)

    def closed_elsewhere(self, incident: pb.Incident) -> None:
        """Stream the CLOSED event of an incident the store closed already (one a dead replica
        left open on a source this one took over). Any thread."""
        with self._lock:
            if not self._closed:
                self._publish(pb.StreamIncidentsResponse(type=CLOSED, incident=incident))

    def _emit(self, kind: pb.IncidentEventType.ValueType, incident: pb.Incident) -> None:
        # Called under the lock, so an incident's events reach every consumer in order.
        # The message copies the incident; consumers must treat it as read-only.
        event = pb.StreamIncidentsResponse(type=kind, incident=incident)
        self.store.save(event.incident)
        self._publish(event)

    def _publish(self, event: pb.StreamIncidentsResponse) -> None:
        # Under the lock, like _emit. The webhook hears alerts and what follows them (alerts.py).
        policy = self.alert_policy(event.incident.source_id)
        event.alert = alerts.is_alert(event.type, event.incident, policy)
        if self.webhook is not None and (
            event.alert or alerts.follows_alert(event.type, event.incident, policy)
        ):
            self.webhook.post(event)
        self.store.announce(event)
        try:
            self.loop.call_soon_threadsafe(self._fanout, event)
        except RuntimeError:
            log.debug("event loop closed; incident event not streamed")

    def settle(self, incident_id: str, change: Callable[[pb.Incident], None]) -> None:
        """Apply a verification's outcome (``change``) to an incident and emit it as VERIFIED.

        Any thread; never blocks. An open incident changes in memory too, so its later events
        carry the verdict; a closed one changes in the history, then its event goes out.
        """
        with self._lock:
            if self._closed:
                return
            state = self._open_by_id.get(incident_id)
            if state is not None:
                change(state.incident)
                self._emit(VERIFIED, state.incident)
                return
            future = self.store.update(incident_id, change)

        def done(f: concurrent.futures.Future[pb.Incident | None]) -> None:
            # On the store's writer thread, after the write.
            if f.cancelled() or f.exception() is not None or (changed := f.result()) is None:
                return
            with self._lock:
                if not self._closed:
                    self._publish(pb.StreamIncidentsResponse(type=VERIFIED, incident=changed))

        future.add_done_callback(done)

    def _clip_done(self, source_id: str, incident_id: str, clip_path: str) -> None:
        # On the clip writer thread. An incident still open carries its clip on its CLOSED event;
        # one already closed gets it in the history only.
        with self._lock:
            state = self._open_by_id.get(incident_id)
            if state is not None:
                state.incident.clip_path = clip_path
                return
            self.store.set_clip_path(incident_id, clip_path)

    # --- event loop ----------------------------------------------------------------------------

    def subscribe(
        self, source_id: str = "", *, include_snapshot: bool = True
    ) -> IncidentSubscription:
        """Follow events from now on, of one source or (empty) all. Call on the event loop."""
        sub = IncidentSubscription(
            self._subscriptions.discard, source_id, include_snapshot, self.config.subscriber_queue
        )
        if self._closed:
            sub.close()
        else:
            self._subscriptions.add(sub)
        return sub

    def change_open(self, incident_id: str, change: Callable[[pb.Incident], None]) -> None:
        """Apply ``change`` to the incident if it is still open, so that its later events (and
        the saves that come with them) carry it. Any thread."""
        with self._lock:
            state = self._open_by_id.get(incident_id)
            if state is not None:
                change(state.incident)

    def publish(self, kind: pb.IncidentEventType.ValueType, incident: pb.Incident) -> None:
        """Stream an event that no frame made (an operator's review). Call on the event loop."""
        event = pb.StreamIncidentsResponse(type=kind, incident=incident)
        self.store.announce(event)
        self._fanout(event)

    def relay(self, event: pb.StreamIncidentsResponse) -> None:
        """Stream an event another replica streamed first (its sources' incidents, reviews made
        there). Any thread."""
        if event.type == REVIEWED:
            # Reviewed elsewhere while open here: its later events carry the review, as they do
            # when it is reviewed here.
            review = event.incident.review
            self.change_open(event.incident.id, lambda incident: apply_review(incident, review))
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody streams any more
            self.loop.call_soon_threadsafe(self._fanout, event)

    def _fanout(self, event: pb.StreamIncidentsResponse) -> None:
        for sub in list(self._subscriptions):
            sub.offer(event)

    def _end_subscriptions(self) -> None:
        for sub in list(self._subscriptions):
            sub.close()

    async def list(
        self, source_id: str, page_size: int, page_token: str, include_snapshot: bool
    ) -> pb.ListIncidentsResponse:
        """A page of the history, newest first. Raises ``ValueError`` for a bad page token."""
        size = DEFAULT_PAGE_SIZE if page_size <= 0 else min(page_size, MAX_PAGE_SIZE)
        found, token = await self.store.list(source_id, size, page_token, include_snapshot)
        return pb.ListIncidentsResponse(incidents=found, next_page_token=token)

    # --- shutdown ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close open incidents, write pending clips, drain the webhook briefly, close the store.

        Blocks for up to a few seconds (clip writing, webhook drain): call it at shutdown, from
        a thread (``asyncio.to_thread``) or accepting the pause on the loop. Subscriptions end
        after the last CLOSED events.
        """
        with self._lock:
            if self._closed:
                return
            for source_id in list(self._sources):
                self._end_source(source_id)
            self._closed = True
        # Outside the lock: finishing clips calls back into _clip_done, which takes it.
        if self.clips is not None:
            self.clips.close()
        if self.webhook is not None:
            self.webhook.close()
        self.store.close()
        # A closed loop took its subscriptions with it.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._end_subscriptions)


def open_tracker(
    config: IncidentConfig,
    loop: asyncio.AbstractEventLoop,
    recording: IncidentRecording | None = None,
    store: IncidentKeeping | None = None,
) -> IncidentTracker:
    """A tracker with ``store`` (by default the SQLite file the config names) and (when
    ``webhook_url`` is set) the webhook the config describes."""
    if store is None:
        store = IncidentStore(config.db_path)
    webhook = None
    if config.webhook_url:
        webhook = Webhook(
            config.webhook_url, config.webhook_retries, queue_size=config.webhook_queue
        )
    return IncidentTracker(config, store, loop, webhook, recording)


def _timestamp(time_ns: int) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(time_ns)
    return ts
