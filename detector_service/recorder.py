"""Continuous recording of the always-on sources, with retention and incident holds.

What is recorded. Every source in mode ``always`` while ``recording`` is on (on-demand sources
are watched now and then, so a recording of them would be mostly gaps). How:

- a stream (or file) without ``record_uri``: its capture reader's packets are teed off as they
  are demuxed (``AvReader.tap``) to the source's recording thread (``RecordingTee``), which
  remuxes them; one connection to the camera serves detection and recording;
- a stream with ``record_uri`` (the camera's main stream): a second connection, opened by a
  thread of its own for recording only and never decoded; detection keeps ``uri``;
- a webcam or the test pattern: its pictures are encoded once, on the recording thread
  (``FrameEncoder``), at most ``max_fps`` a second.

Reconnects follow the capture (or, for ``record_uri``, the recording thread's own backoff); a
reconnect whose stream changed starts a new run (``SegmentWriter``). Nothing here runs on the
event loop: the tee queues, the writers write on their threads, and index updates (holds,
retention) go to one maintenance thread.

Retention (``enforce``, every ``recording_check_s``): each source's ``retention_days`` (or the
service's ``recording_days``), then the disk cap ``recording_max_gb`` over all sources, oldest
first; segments overlapping an incident are held for ``incident_retention_days`` from the
incident (``opened``/``closed``, called by the incident tracker, which also gives the incident
its ``recording`` range).

Replicas (``VIGIL_DETECTOR_DATABASE_URL``): the index is in PostgreSQL, shared, and every replica
writes under one ``recording_dir`` they all see, each segment naming its writer (the replica id),
so any replica reads any source's whole recording. A replica finishes at start the segments its
own killed run left open, and on taking a source over those another replica left open (it died,
or stalled and lost the lease). Retention: each replica keeps the days of the sources it runs
(and of removed ones), whoever wrote their segments; the disk cap is over everything.

Detections (``detected``, from each source's processing thread): the boxes of a recorded
source's detected frames go to the index next to its segments (``recording/detections.py``),
and retention deletes them with the segment whose time they fall in.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import pathlib
import shutil
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING

from detector_service.backends.base import Image
from detector_service.capture import AvReader, CaptureError, FrameReader, open_reader
from detector_service.private import private_dir
from detector_service.recording import (
    DetectionLog,
    RecordingIndex,
    RetentionPolicy,
    RetentionReport,
    SegmentIndex,
    SegmentWriter,
    enforce,
)
from detector_service.recording.indexes import open_index
from detector_service.recording.tee import RecordingTee
from detector_service.settings import DetectorSettings
from detector_service.source_uri import SourceUri
from detector_service.subscribers import Processed
from vigil.core.backoff import Backoff
from vigil.detector.v1 import detector_service_pb2 as pb

if TYPE_CHECKING:
    from detector_service.recording.writer import VideoPacket

log = logging.getLogger(__name__)

DAY_S = 86_400.0
GB = 1_000_000_000
# Keyframes of the pictures we encode: segments cut at this rhythm, exports start within it.
ENCODED_KEYFRAME_S = 2.0


def recording_root(settings: DetectorSettings) -> pathlib.Path:
    return settings.recording_dir or settings.data_dir / "recordings"


class RecordingReader(FrameReader):
    """A capture reader whose input is also recorded (the tee of a connection)."""

    def __init__(self, inner: FrameReader, tee: RecordingTee, fps: float) -> None:
        self.inner, self.tee = inner, tee
        self.interval = 1.0 / fps
        self.next_at = 0.0
        if isinstance(inner, AvReader):
            tee.begin_packets(inner.stream)
            inner.tap = tee.put_packet
            self.frames = False
        else:
            tee.begin_frames(fps, ENCODED_KEYFRAME_S)
            self.frames = True

    def read(self) -> Image:
        image = self.inner.read()
        if self.frames:
            now = time.time()
            if now >= self.next_at:  # a webcam's 30 fps is recorded at the source's max_fps
                self.next_at = max(self.next_at + self.interval, now)
                self.tee.put_frame(image, now)
        return image

    def close(self) -> None:
        self.tee.end()
        self.inner.close()


class MainStream:
    """A camera's main stream (``record_uri``), opened by its own thread for recording only."""

    def __init__(self, spec: pb.SourceSpec, writer: SegmentWriter, open_timeout_s: float) -> None:
        # Only the record URI is opened: its spec is a stream's with that URI.
        self.spec = pb.SourceSpec(id=spec.id, kind=pb.SOURCE_KIND_STREAM, uri=spec.record_uri)
        self.uri = SourceUri(spec.record_uri)
        self.writer = writer
        self.open_timeout_s = open_timeout_s
        self.recording = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"record-{spec.id}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        backoff = Backoff(initial_s=0.5, max_s=30.0)
        while not self._stop.is_set():
            try:
                reader = AvReader(self.spec, open_timeout_s=self.open_timeout_s)
            except CaptureError as exc:
                log.warning("recording of %s: %s", self.spec.id, exc)
                self._stop.wait(backoff.next())
                continue
            try:
                self.recording = True
                self.writer.record(reader.stream, self._packets(reader, backoff))
            except Exception as exc:
                log.warning("recording of %s: %s", self.spec.id, self.uri.redact(str(exc)))
            finally:
                self.recording = False
                reader.close()
            self._stop.wait(backoff.next())

    def _packets(self, reader: AvReader, backoff: Backoff) -> Iterator[VideoPacket]:
        for packet in reader.packets():
            if self._stop.is_set():
                return
            backoff.reset()
            yield packet

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


class Recorder:
    """The recordings of every source: who is recorded, their threads, holds and retention."""

    def __init__(self, settings: DetectorSettings, index: RecordingIndex, writer: str = "") -> None:
        self.settings = settings
        self.index = index
        self.root = recording_root(settings)
        # This replica's name on the segments it writes, when replicas share the index ("" for
        # a service on its own).
        self.writer = writer
        self._tees: dict[str, RecordingTee] = {}
        self._main: dict[str, MainStream] = {}
        self._ended: list[RecordingTee | MainStream] = []
        # Index writes that must not wait on a processing thread (holds) and retention.
        self.jobs = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="recording")
        self.detections = DetectionLog(index, self.jobs)
        self.last_report: RetentionReport | None = None

    @classmethod
    def open(cls, settings: DetectorSettings) -> Recorder:
        """Open the index and finish the segments a killed service left open (blocking)."""
        root = private_dir(recording_root(settings))
        index = open_index(settings, root)
        writer = "" if isinstance(index, SegmentIndex) else settings.replica
        try:
            recovered = 0
            for source in index.sources():
                recovered += len(SegmentWriter(index, root, source, writer=writer).recover())
        except BaseException:
            index.close()
            raise
        if recovered:
            log.info("recording: %d segments left open by the last run recovered", recovered)
        return cls(settings, index, writer)

    # --- sources (event loop) ---------------------------------------------------------------

    def wants(self, spec: pb.SourceSpec) -> bool:
        return self.settings.recording and spec.mode == pb.SOURCE_MODE_ALWAYS

    def attach(self, spec: pb.SourceSpec) -> None:
        """Record ``spec`` (its mode resolved, its real URIs) from now on, if it is recorded."""
        if not self.wants(spec) or spec.id in self._tees or spec.id in self._main:
            return
        writer = SegmentWriter(
            self.index,
            self.root,
            spec.id,
            segment_s=self.settings.recording_segment_s,
            writer=self.writer,
        )
        if self.writer:
            # Taken over from a replica that died (or stalled and lost its lease): its open
            # segment is finished here, or the recording before the move would end a segment
            # early and that segment stay out of every listing and export.
            with contextlib.suppress(RuntimeError):  # shutting down
                self.jobs.submit(self._recover_others, writer)
        if spec.record_uri:
            self._main[spec.id] = MainStream(spec, writer, self.settings.open_timeout_s)
        else:
            max_bytes = int(self.settings.recording_buffer_mb * 1_000_000)
            self._tees[spec.id] = RecordingTee(writer, max_bytes)

    def _recover_others(self, writer: SegmentWriter) -> None:
        try:
            recovered = writer.recover(others=True)
        except Exception:
            log.exception(
                "recording of %s: segments left open elsewhere not recovered", writer.source
            )
            return
        if recovered:
            log.info(
                "recording of %s: %d segments left open by other replicas recovered",
                writer.source,
                len(recovered),
            )

    def detach(self, source_id: str) -> None:
        """Stop recording a source (removed); its recordings stay, under retention."""
        for table in (self._tees, self._main):
            ended = table.pop(source_id, None)
            if ended is not None:
                ended.stop()
                self._ended.append(ended)

    def records(self, source_id: str) -> bool:
        return source_id in self._tees or source_id in self._main

    def is_recording(self, source_id: str) -> bool:
        part = self._tees.get(source_id) or self._main.get(source_id)
        return part is not None and part.recording

    def losses(self, source_id: str) -> tuple[int, int]:
        """Times a source's recording was cut for a full queue, and the packets lost to it."""
        tee = self._tees.get(source_id)
        return (tee.cuts, tee.dropped) if tee is not None else (0, 0)

    def open_reader(self, spec: pb.SourceSpec, fps: float) -> FrameReader:
        """The capture's reader factory: the source's reader, teed when the source is recorded
        from it (any thread)."""
        reader = open_reader(spec, fps, self.settings.open_timeout_s)
        tee = self._tees.get(spec.id)
        if tee is None:
            return reader
        try:
            return RecordingReader(reader, tee, fps)
        except Exception as exc:
            # Detection goes on without the recording rather than fail the capture's open.
            log.warning("recording of %s cannot start on this connection: %s", spec.id, exc)
            return reader

    def detected(self, item: Processed) -> None:
        """A source's processed frame (its processing thread): its boxes are stored when the
        source is recorded and the model ran on it. A frame the motion gate skipped
        (``inference_ms`` 0) carries the last detected frame's boxes, which are stored already."""
        if item.inference_ms > 0 and item.error is None and self.records(item.source_id):
            self.detections.add(
                item.source_id, item.capture_ns, item.width, item.height, item.detections
            )

    # --- incidents (processing threads, under the tracker's lock: no I/O here) ---------------

    def opened(self, incident: pb.Incident) -> None:
        """Give a recorded source's new incident its recording range (open-ended) and hold it."""
        if not self.records(incident.source_id):
            return
        at = incident.opened_at.ToNanoseconds() / 1e9
        start = at - self.settings.incident_recording_pre_s
        incident.recording.start.FromNanoseconds(round(start * 1e9))
        self._hold(incident, start, at + self.settings.incident_recording_post_s, at)

    def closed(self, incident: pb.Incident) -> None:
        if not incident.HasField("recording"):
            return
        at = incident.closed_at.ToNanoseconds() / 1e9
        end = at + self.settings.incident_recording_post_s
        incident.recording.end.FromNanoseconds(round(end * 1e9))
        self._hold(incident, incident.recording.start.ToNanoseconds() / 1e9, end, at)

    def _hold(self, incident: pb.Incident, start: float, end: float, at: float) -> None:
        keep_until = at + self.settings.incident_retention_days * DAY_S
        reason = f"incident {incident.id}"
        try:
            self.jobs.submit(self.index.hold, incident.source_id, start, end, keep_until, reason)
        except RuntimeError:  # shutting down: the incident is closed after the recordings
            log.warning("incident %s: its recording is not held (shutting down)", incident.id)

    # --- retention ---------------------------------------------------------------------------

    def policy(
        self, specs: list[pb.SourceSpec], elsewhere: frozenset[str] = frozenset()
    ) -> RetentionPolicy:
        """The retention rules now (blocking: reads the index and the disk's free space).
        ``elsewhere``: the sources other replicas run, whose retention is theirs to keep."""
        # The recordings may grow into the disk's free space less the floor: others' files and
        # the database need room too, and a full disk stops every recording at once.
        free = shutil.disk_usage(self.root).free
        room = self.index.total_bytes() + free - int(self.settings.recording_min_free_gb * GB)
        cap = self.settings.recording_max_gb
        return RetentionPolicy(
            default_days=self.settings.recording_days,
            days={s.id: s.retention_days for s in specs if s.retention_days > 0},
            max_bytes=max(0, room if cap is None else min(int(cap * GB), room)),
            elsewhere=elsewhere,
        )

    def enforce(
        self, specs: list[pb.SourceSpec], elsewhere: frozenset[str] = frozenset()
    ) -> RetentionReport:
        """One retention pass (blocking; runs on the maintenance thread)."""
        self.detections.flush()  # a still scene's last entry may wait for no batch
        report = enforce(self.index, self.policy(specs, elsewhere))
        if report.deleted:
            log.info(
                "recording retention: %d segments deleted (%d bytes)",
                len(report.deleted),
                report.freed,
            )
        if report.over_cap:
            log.warning(
                "recording: %d bytes over the disk cap, all of them held for incidents",
                report.over_cap,
            )
        self.last_report = report
        return report

    async def keep_retention(
        self,
        specs: Callable[[], list[pb.SourceSpec]],
        elsewhere: Callable[[], Awaitable[frozenset[str]]] | None = None,
    ) -> None:
        """Enforce retention now and every ``recording_check_s`` (a task of the server).
        ``elsewhere``: the sources other replicas run now (their owners keep their retention)."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                others = frozenset() if elsewhere is None else await elsewhere()
                await loop.run_in_executor(self.jobs, self.enforce, specs(), others)
            except Exception:
                log.exception("recording retention failed; tried again later")
            await asyncio.sleep(self.settings.recording_check_s)

    # --- shutdown ----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every recording, wait for the writers to close their segments (blocking)."""
        for source_id in list(self._tees) + list(self._main):
            self.detach(source_id)
        deadline = time.monotonic() + 10.0
        for part in self._ended:
            part.join(max(deadline - time.monotonic(), 0.0))
        self.jobs.shutdown(wait=True)
        self.detections.flush()
        self.index.close()
