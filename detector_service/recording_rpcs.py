"""The recording's gRPC methods: GetCoverage, ExportRecording, GetSnapshot and ListDetections.

A mixin of ``DetectorServicer`` (which sets ``registry``, ``recorder`` and ``exports``). Every
read of the index or a segment runs on a thread; the event loop only passes bytes along.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from detector_service.recorder import Recorder
from detector_service.recording import NotRecorded, Segment, Snapshot, snapshot
from detector_service.recording.exports import ExportCache
from detector_service.settings import DetectorSettings
from detector_service.sources import SourceRegistry
from vigil.core.errors import InvalidInput, NotFound, Unavailable
from vigil.core.queues import QueueClosed
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc

Context = grpc.aio.ServicerContext[object, object]

# The open segment starts where the last closed one ended, give or take the clock's mapping.
OPEN_JOIN_S = 1.0
# Bytes of an export per response message.
CHUNK = 256 * 1024
# A live snapshot waits this long beyond the source's open timeout for a frame.
LIVE_WAIT_S = 5.0


@dataclass(frozen=True)
class _Range:
    start: float
    end: float | None  # None: still recording


def _seconds(ts: Timestamp) -> float:
    return ts.ToNanoseconds() / 1e9


def _timestamp(at: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(round(at * 1e9))
    return ts


def _time_range(start: float, end: float | None) -> pb.TimeRange:
    out = pb.TimeRange(start=_timestamp(start))
    if end is not None:
        out.end.CopyFrom(_timestamp(end))
    return out


class RecordingRpcs(pb_grpc.DetectorServiceServicer):
    settings: DetectorSettings
    registry: SourceRegistry
    recorder: Recorder
    exports: ExportCache

    def _require(self, source_id: str) -> None:
        """NotFound unless the source exists or has recordings (blocking: the index)."""
        try:
            self.registry.get(source_id)
        except NotFound:
            if not self.recorder.index.has_source(source_id):
                raise

    def _bounded(self, asked: pb.TimeRange, what: str) -> tuple[float, float]:
        """A range's start and end: both given, in order, at most the export limit long."""
        if not (asked.HasField("start") and asked.HasField("end")):
            raise InvalidInput(f"{what} needs the range's start and end", field="range")
        start, end = _seconds(asked.start), _seconds(asked.end)
        if end <= start:
            raise InvalidInput("the range's end must be after its start", field="range")
        if end - start > self.settings.export_max_s:
            raise InvalidInput(
                f"a range of {end - start:.0f} s is longer than the export limit of "
                f"{self.settings.export_max_s:.0f} s",
                field="range",
            )
        return start, end

    # --- GetCoverage -----------------------------------------------------------------------

    async def GetCoverage(
        self, request: pb.GetCoverageRequest, context: Context
    ) -> pb.GetCoverageResponse:
        open_ended = not request.HasField("end")
        start = _seconds(request.start) if request.HasField("start") else 0.0
        end = time.time() if open_ended else _seconds(request.end)
        if end <= start:
            raise InvalidInput("the window's end must be after its start", field="end")
        ranges, size = await asyncio.to_thread(
            self._coverage, request.source_id, start, end, open_ended
        )
        return pb.GetCoverageResponse(
            ranges=[_time_range(r.start, r.end) for r in ranges], bytes=size
        )

    def _coverage(
        self, source: str, start: float, end: float, open_ended: bool
    ) -> tuple[list[_Range], int]:
        self._require(source)
        index = self.recorder.index
        ranges = [_Range(c.start, c.end) for c in index.coverage(source, start, end).covered]
        opened: list[Segment] = []
        if self.recorder.is_recording(source):
            # Ours only: another replica's is one it left open when the source moved here.
            opened = [s for s in index.unfinished(source) if s.writer == self.recorder.writer]
        if opened and opened[-1].start < end:
            # The segment being written: covered up to now, joined to the recording before it.
            since = max(opened[-1].start, start)
            last = ranges[-1] if ranges else None
            if last is not None and last.end is not None and since - last.end <= OPEN_JOIN_S:
                since = ranges.pop().start
            ranges.append(_Range(since, None if open_ended else end))
        return ranges, index.source_bytes(source)

    # --- ExportRecording -------------------------------------------------------------------

    async def ExportRecording(
        self, request: pb.ExportRecordingRequest, context: Context
    ) -> AsyncIterator[pb.ExportRecordingResponse]:
        start, end = self._bounded(request.range, "an export")
        await asyncio.to_thread(self._require, request.source_id)
        try:
            exported = await self.exports.get(request.source_id, start, end)
        except NotRecorded as exc:
            raise NotFound(str(exc)) from None
        export = exported.export
        yield pb.ExportRecordingResponse(
            info=pb.ExportInfo(
                covered=_time_range(export.start, export.end),
                size=exported.size,
                content_type="video/mp4",
                gaps=[_time_range(g.start, g.end) for g in export.gaps],
            )
        )
        # An offset at or past the end sends the description alone: the caller learns the size
        # (an HTTP range past the end is answered 416 with it).
        stop = exported.size
        if request.limit:
            stop = min(stop, request.offset + request.limit)
        with await asyncio.to_thread(export.path.open, "rb") as file:
            await asyncio.to_thread(file.seek, request.offset)
            at = request.offset
            while at < stop:
                chunk = await asyncio.to_thread(file.read, min(CHUNK, stop - at))
                if not chunk:
                    break
                at += len(chunk)
                yield pb.ExportRecordingResponse(chunk=chunk)

    # --- GetSnapshot -----------------------------------------------------------------------

    async def GetSnapshot(
        self, request: pb.GetSnapshotRequest, context: Context
    ) -> pb.GetSnapshotResponse:
        if not request.HasField("at"):
            return await self._live_snapshot(request.source_id)
        at = _seconds(request.at)
        try:
            shot = await asyncio.to_thread(self._recorded_snapshot, request.source_id, at)
        except NotRecorded as exc:
            raise NotFound(str(exc)) from None
        return pb.GetSnapshotResponse(
            jpeg=shot.jpeg, at=_timestamp(shot.at), width=shot.width, height=shot.height
        )

    def _recorded_snapshot(self, source: str, at: float) -> Snapshot:
        self._require(source)
        return snapshot(self.recorder.index, source, at, quality=self.settings.jpeg_quality)

    async def _live_snapshot(self, source_id: str) -> pb.GetSnapshotResponse:
        """The next frame the source publishes (an on-demand one is started for it, and stops
        again after its linger time)."""
        source = self.registry.get(source_id)
        subscriber = source.subscribe()
        wait_s = self.settings.open_timeout_s + LIVE_WAIT_S
        try:
            async with asyncio.timeout(wait_s):
                while True:
                    message = await subscriber.next()
                    if message.HasField("frame"):
                        frame = message.frame
                        return pb.GetSnapshotResponse(
                            jpeg=frame.jpeg,
                            at=frame.capture_time,
                            width=frame.width,
                            height=frame.height,
                        )
        except QueueClosed:
            raise NotFound(f"source {source_id!r} was removed") from None
        except TimeoutError:
            state = pb.SourceState.Name(source.state).removeprefix("SOURCE_STATE_").lower()
            raise Unavailable(
                f"no frame from {source_id} in {wait_s:.0f} s (it is {state})"
            ) from None
        finally:
            source.unsubscribe(subscriber)

    # --- ListDetections ----------------------------------------------------------------------

    async def ListDetections(
        self, request: pb.ListDetectionsRequest, context: Context
    ) -> pb.ListDetectionsResponse:
        start, end = self._bounded(request.range, "a list of detections")
        frames = await asyncio.to_thread(self._detections, request.source_id, start, end)
        return pb.ListDetectionsResponse(frames=frames)

    def _detections(self, source: str, start: float, end: float) -> list[pb.FrameDetections]:
        self._require(source)
        return self.recorder.detections.frames(source, start, end)
