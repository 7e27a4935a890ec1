"""A live source: capture thread → newest-wins slot → detect, draw, encode → fan-out.

Capture and processing each run on their own thread, never on the event loop. The capture thread
overwrites a one-frame slot (the frames it replaces were never processed, and are counted); the
processing thread takes the newest frame at most ``max_fps`` times a second, runs it through the
shared inference batcher, draws and encodes it, and hands the result to the event loop, which puts
it in every subscriber's own newest-wins queue. On an always-on source the motion gate
(``gating.py``) decides first whether, and on which regions, the model runs.

An on-demand source captures from its first subscriber until shortly after its last one leaves; an
always-on one (``spec.mode``, resolved by the registry) is started when registered and keeps
capturing and detecting with no subscriber, so its frames reach the incident observer all the same.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from google.protobuf.timestamp_pb2 import Timestamp

from detector_service.backends.base import Image
from detector_service.batcher import InferenceBatcher
from detector_service.capture import CaptureError, EndOfStream, FrameReader, open_reader
from detector_service.frame_work import FrameWork
from detector_service.health_monitor import CameraWatch
from detector_service.main_view import MainView
from detector_service.rate import Rate
from detector_service.settings import DetectorSettings
from detector_service.source_uri import SourceUri
from detector_service.subscribers import FrameObserver, Processed, Subscriber
from detector_service.watch_rules import RuleWatch
from detector_service.zones import ZoneWatch
from vigil.core.backoff import Backoff
from vigil.detector.v1 import detector_service_pb2 as pb

log = logging.getLogger(__name__)

# A starting or live source without a frame for this long is reported RECONNECTING (to its
# subscribers, with the reason in last_error) while the capture still waits on its read (which may
# block for up to READ_TIMEOUT_S) or its open (open_timeout_s): a frozen camera is visible within
# about 3.5 s.
WATCHDOG_S = 3.0


@dataclass
class _Slot:
    """The newest captured frame, not yet processed."""

    cond: threading.Condition = field(default_factory=threading.Condition)
    frame: tuple[Image, int] | None = None
    replaced: int = 0


class LiveSource:
    def __init__(
        self,
        spec: pb.SourceSpec,
        settings: DetectorSettings,
        batcher: InferenceBatcher,
        loop: asyncio.AbstractEventLoop,
        reader_factory: Callable[[pb.SourceSpec, float], FrameReader] | None = None,
        observer: FrameObserver | None = None,
        recording: Callable[[str], bool] | None = None,
        zones: ZoneWatch | None = None,
        health: CameraWatch | None = None,
        detected: Callable[[Processed], None] | None = None,
        rules: RuleWatch | None = None,
    ) -> None:
        # The real URI lives only inside ``uri``; the spec kept and handed out (snapshots, logs,
        # subscribers) holds its masked form, so nothing built from it can leak a password.
        self.uri = SourceUri(spec.uri)
        self.spec = pb.SourceSpec()
        self.spec.CopyFrom(spec)
        self.spec.uri = self.uri.masked
        # The main stream: recorded by the recorder, shown at full size by the main view.
        self.record_uri = SourceUri(spec.record_uri)
        self.spec.record_uri = self.record_uri.masked
        self.observer = observer
        # Whether the recorder is recording this source now (Source.recording).
        self._recording = recording
        self.zones = zones
        # Camera-health checks (cameras only): offered every captured frame, they sample it.
        self.health = health
        # Stores the boxes of a recorded source's detected frames (Recorder.detected).
        self.detected = detected
        self.settings = settings
        self.batcher = batcher
        self.loop = loop
        self.reader_factory = reader_factory or functools.partial(
            open_reader, open_timeout_s=settings.open_timeout_s
        )
        self.max_fps = spec.max_fps or settings.max_fps
        self.state: pb.SourceState.ValueType = pb.SOURCE_STATE_IDLE
        self.state_since = time.time_ns()
        self.last_error = ""
        self.subscribers: set[Subscriber] = set()
        self.counters = pb.SourceCounters()
        self._rates = {"in": Rate(), "out": Rate()}
        self._slot = _Slot()
        # Set while capturing. Each start gets a fresh "stopping" event, so threads of an earlier
        # run that are still asleep in a backoff can never resume alongside the new ones.
        self._running = False
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._loop_thread = threading.get_ident()
        self._linger: asyncio.TimerHandle | None = None
        # The source's watch rules (watch_rules.py): they judge every detected frame.
        self.rules = rules
        # Gate, detect, draw and encode each frame (frame_work.py).
        self._work = FrameWork(spec, settings, batcher, rules)
        self.newest: Processed | None = None  # whose boxes the main view draws
        self.main_view = MainView(spec.id, settings, loop, lambda: self.newest)
        self.main_view.configure(self.record_uri, self.max_fps)

    # --- event-loop side -------------------------------------------------------------------

    def snapshot(self) -> pb.Source:
        counters = pb.SourceCounters()
        counters.CopyFrom(self.counters)
        counters.fps_in = self._rates["in"].value()
        counters.fps_out = self._rates["out"].value()
        counters.inference_ms = self._work.inference_ms()
        counters.frames_replaced = self._slot.replaced
        # Live: those who left were added up when they left; those still here are counted now.
        counters.frames_dropped += sum(sub.frames.dropped for sub in self.subscribers)
        counters.subscribers = len(self.subscribers)
        since = Timestamp()
        since.FromNanoseconds(self.state_since)
        return pb.Source(
            spec=self.spec,
            state=self.state,
            last_error=self.last_error,
            counters=counters,
            state_since=since,
            recording=self._recording is not None and self._recording(self.spec.id),
            camera_problems=self.health.problems if self.health is not None else (),
            watch_rules=self.rules.status() if self.rules is not None else (),
        )

    @property
    def always(self) -> bool:
        """Captured with or without subscribers (the registry starts it)."""
        return self.spec.mode == pb.SOURCE_MODE_ALWAYS

    def subscribe(self, omit_jpeg: bool = False, main_stream: bool = False) -> Subscriber:
        main_stream = main_stream and bool(self.spec.record_uri)  # else ignored
        sub = Subscriber(self.settings.subscriber_queue, omit_jpeg, main_stream)
        self.subscribers.add(sub)
        if main_stream:
            self.main_view.add(sub)
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if not self._running:
            self.start()
        sub.push_state(self.snapshot())
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)
        self.main_view.discard(sub)
        self.counters.frames_dropped += sub.frames.dropped
        sub.frames.close()
        if not self.subscribers and self._running and not self.always:
            # As in the seed: the camera stops with its last viewer, after a short grace period.
            self._linger = self.loop.call_later(self.settings.linger_s, self.stop)

    def start(self) -> None:
        self._running = True
        self._stopping = stopping = threading.Event()
        self.batcher.add_producer()
        self._set_state(pb.SOURCE_STATE_STARTING)
        self._threads = [t for t in self._threads if t.is_alive()]
        for target, name in ((self._capture_loop, "capture"), (self._process_loop, "process")):
            thread = threading.Thread(
                target=target, args=(stopping,), name=f"{name}-{self.spec.id}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, final_state: pb.SourceState.ValueType = pb.SOURCE_STATE_STOPPED) -> None:
        """Ask both threads to end; they notice within a frame or a read timeout."""
        self._linger = None
        if self._running:
            self._running = False
            self._stopping.set()
            self.batcher.remove_producer()
            with self._slot.cond:
                # An idle source holds no picture (2.7 MB at 720p): the capture thread stores
                # nothing once its run is stopping, so nothing lands here after this.
                self._slot.frame = None
                self._slot.cond.notify_all()
            if self.observer is not None:
                self.observer.end_source(self.spec.id)
            if self.rules is not None:
                self.rules.end()
        self._set_state(final_state)

    def respec(self, spec: pb.SourceSpec, restart: bool) -> None:
        """Take a new spec (validated, mode resolved, real URIs). A running capture restarts only
        when ``restart`` says its stream changed; zones and settings read per frame apply at once.
        """
        running = self._running
        if running and restart:
            self.stop()
        self.uri, self.record_uri = SourceUri(spec.uri), SourceUri(spec.record_uri)
        fresh = pb.SourceSpec()
        fresh.CopyFrom(spec)
        fresh.uri, fresh.record_uri = self.uri.masked, self.record_uri.masked
        self.spec, self.max_fps = fresh, spec.max_fps or self.settings.max_fps
        if restart:
            self.main_view.configure(self.record_uri, self.max_fps)
        if self.zones is not None:
            self.zones.configure(fresh)
        if self.health is not None:
            self.health.configure(fresh)
        if self.rules is not None:
            self.rules.configure(fresh)
        self._work.configure(fresh)
        if not self._running and (self.always or (running and self.subscribers)):
            self.start()
        elif self._running and not self.always and not self.subscribers:
            self.stop()

    def _end_run(self, run: threading.Event, state: pb.SourceState.ValueType) -> None:
        # A run that ended by itself (a file's end, a permanent failure) stops the source only if
        # it is still the current run: a late word from an old one must not stop a new one.
        if not run.is_set():
            self.stop(state)

    def close(self) -> None:
        """Stop and end every subscription (the source is being removed)."""
        self.stop()
        self.main_view.stop()
        for sub in list(self.subscribers):
            sub.frames.close()

    def join(self, timeout: float) -> None:
        """Wait for the threads of every run to end (blocking: call off the event loop)."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0))

    def _publish(self, item: Processed) -> None:
        self._rates["out"].tick()
        self.counters.frames_published += 1
        self.newest = item
        for sub in self.subscribers:
            # A frame encoded for nobody (see FrameWork._wants_jpeg) reaches a viewer who just
            # arrived only if that viewer asked for no pictures. Main-view ones get their own.
            if (item.jpeg or sub.omit_jpeg) and not sub.main_stream:
                sub.frames.put(item)

    def _broadcast_state(
        self,
        state: pb.SourceState.ValueType,
        error: str,
        since: int,
        run: threading.Event | None,
    ) -> None:
        if run is not None and run.is_set():
            # From a run that has been stopped since (its open or read came back late, or its
            # frame was already in hand): the stop's state stands, whatever its threads still do.
            return
        self.state, self.state_since = state, since
        if error:
            self.last_error = error
        elif state == pb.SOURCE_STATE_LIVE:
            # Frames flow again: the reason it was not live is history, not a current error.
            self.last_error = ""
        snapshot = self.snapshot()
        for sub in self.subscribers:
            sub.push_state(snapshot)

    # --- thread side ---------------------------------------------------------------------------

    def _set_state(
        self,
        state: pb.SourceState.ValueType,
        error: str = "",
        run: threading.Event | None = None,
    ) -> None:
        """Change the state; a capture or processing thread passes its run's stop event."""
        if state == self.state and not error:
            return
        # Every error on the way to last_error, the log and the subscribers passes here: scrub
        # whatever the capture library quoted of the real URI.
        error = self.uri.redact(error)
        if error:
            log.warning("source %s: %s", self.spec.id, error)
        args = (state, error, time.time_ns(), run)
        if threading.get_ident() == self._loop_thread:
            self._broadcast_state(*args)
        else:
            self._tell_loop(stopping=run, callback=self._broadcast_state, args=args)

    def _tell_loop(
        self,
        stopping: threading.Event | None,
        callback: Callable[..., None],
        args: tuple[object, ...],
    ) -> None:
        # A stopped run has no say (the loop would ignore it), and may outlive the service's loop:
        # an always-on camera's open that returns after shutdown must not call a closed loop.
        if stopping is None or not stopping.is_set():
            self.loop.call_soon_threadsafe(callback, *args)

    def _capture_loop(self, stopping: threading.Event) -> None:
        # Reopens wait 0.5 s doubling to 30 s; a frame starts the schedule again.
        backoff = Backoff(initial_s=0.5, max_s=30.0)
        while not stopping.is_set():
            try:
                reader = self.reader_factory(self._capture_spec(), self.max_fps)
            except Exception as exc:
                exc = _as_capture_error(exc)
                if exc.permanent:
                    self._set_state(pb.SOURCE_STATE_FAILED, str(exc), stopping)
                    self._tell_loop(stopping, self._end_run, (stopping, pb.SOURCE_STATE_FAILED))
                    return
                # Every retry is a reopen, whether the input broke or never opened (a 401).
                self.counters.reconnects += 1
                self._set_state(pb.SOURCE_STATE_RECONNECTING, str(exc), stopping)
                stopping.wait(backoff.next())
                continue
            try:
                while not stopping.is_set():
                    frame = reader.read()
                    backoff.reset()
                    if self.health is not None:
                        self.health.offer(frame, time.time_ns())
                    self._rates["in"].tick()
                    with self._slot.cond:
                        if stopping.is_set():
                            break
                        if self._slot.frame is not None:
                            self._slot.replaced += 1
                        self._slot.frame = (frame, time.time_ns())
                        self._slot.cond.notify()
            except EndOfStream:
                self._tell_loop(stopping, self._end_run, (stopping, pb.SOURCE_STATE_STOPPED))
                return
            except Exception as exc:
                # Whatever broke the read (a decoder error PyAV raises as its own type included),
                # the camera is retried: a capture thread must never just die.
                self.counters.reconnects += 1
                self._set_state(pb.SOURCE_STATE_RECONNECTING, str(_as_capture_error(exc)), stopping)
                stopping.wait(backoff.next())
            finally:
                try:
                    reader.close()
                except Exception as exc:  # a reader that cannot close is dropped all the same
                    log.warning("closing %s failed: %s", self.spec.id, self.uri.redact(str(exc)))

    def _capture_spec(self) -> pb.SourceSpec:
        """The spec with the real URI, for the reader that opens the input and no one else."""
        spec = pb.SourceSpec()
        spec.CopyFrom(self.spec)
        spec.uri = self.uri.reveal()
        return spec

    def _take(self, timeout: float) -> tuple[Image, int] | None:
        with self._slot.cond:
            if self._slot.frame is None:
                self._slot.cond.wait(timeout)
            frame, self._slot.frame = self._slot.frame, None
            return frame

    def _viewers(self) -> bool:
        """Someone wants this source's pictures now."""
        # A copy first: the event loop adds and removes subscribers meanwhile.
        return any(not (sub.omit_jpeg or sub.main_stream) for sub in list(self.subscribers))

    def _process_loop(self, stopping: threading.Event) -> None:
        interval = 1.0 / self.max_fps
        next_at = time.monotonic()
        last_frame_at = time.monotonic()
        while not stopping.is_set():
            delay = next_at - time.monotonic()
            if delay > 0 and stopping.wait(delay):
                return
            taken = self._take(timeout=0.5)
            if taken is None:
                # Also while starting: a stream that opens but never yields a picture (no
                # keyframe, garbage) is as dead to viewers as one that stopped.
                if (
                    self.state in (pb.SOURCE_STATE_LIVE, pb.SOURCE_STATE_STARTING)
                    and time.monotonic() - last_frame_at > WATCHDOG_S
                ):
                    self._set_state(
                        pb.SOURCE_STATE_RECONNECTING, f"no frames for {WATCHDOG_S:g} s", stopping
                    )
                continue
            last_frame_at = time.monotonic()
            next_at = max(next_at + interval, last_frame_at)
            if self.state != pb.SOURCE_STATE_LIVE:
                self._set_state(pb.SOURCE_STATE_LIVE, run=stopping)
            item = self._work.process(*taken, self.counters, self._viewers, always=self.always)
            if stopping.is_set():
                return
            self.loop.call_soon_threadsafe(self._publish, item)
            if self.zones is not None:  # before the observer: incident rules ask it where
                self.zones.observe(item)
            if self.detected is not None:
                self.detected(item)
            # A frame whose detection failed says nothing about weapons: it must not count as
            # their absence and close an incident.
            if self.observer is not None and item.error is None:
                self.observer.observe(
                    self.spec.id, item.detections, item.jpeg, item.capture_ns, item.crops
                )


def _as_capture_error(exc: Exception) -> CaptureError:
    if isinstance(exc, CaptureError):
        return exc
    return CaptureError(f"{type(exc).__name__}: {exc}")
