"""The recording's calls of the detector clients: coverage, export, snapshots and the detections
stored with the recording.

Mixins of ``DetectorClient`` and ``AsyncDetectorClient`` (both flavours, the same methods and
values). An export streams: ``export_stream`` yields its ``ExportInfo`` and then the MP4's bytes
(part of them with ``offset``/``limit``, as HTTP range requests need); ``export`` gathers them
into memory or writes them to a file.
"""

from __future__ import annotations

import asyncio
import pathlib
from typing import TYPE_CHECKING, BinaryIO

from vigil.core.errors import Unavailable
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.sdk.client import AsyncClient, Client
from vigil.sdk.common import timestamp
from vigil.sdk.recording_types import (
    Coverage,
    ExportInfo,
    RecordedDetections,
    Recording,
    Snapshot,
    TimeRange,
    export_item,
)
from vigil.sdk.streams import AsyncStream, Stream

if TYPE_CHECKING:
    from vigil.detector.v1.detector_service_pb2_grpc import (
        DetectorServiceAsyncStub,
        DetectorServiceStub,
    )

UNARY_METHODS = ("GetCoverage", "GetSnapshot", "ListDetections")


def coverage_request(
    source_id: str, start: float | None, end: float | None
) -> pb.GetCoverageRequest:
    request = pb.GetCoverageRequest(source_id=source_id)
    if start is not None:
        request.start.CopyFrom(timestamp(start))
    if end is not None:
        request.end.CopyFrom(timestamp(end))
    return request


def export_request(
    source_id: str, start: float, end: float, offset: int, limit: int
) -> pb.ExportRecordingRequest:
    return pb.ExportRecordingRequest(
        source_id=source_id,
        range=pb.TimeRange(start=timestamp(start), end=timestamp(end)),
        offset=offset,
        limit=limit,
    )


def snapshot_request(source_id: str, at: float | None) -> pb.GetSnapshotRequest:
    request = pb.GetSnapshotRequest(source_id=source_id)
    if at is not None:
        request.at.CopyFrom(timestamp(at))
    return request


def detections_request(source_id: str, start: float, end: float) -> pb.ListDetectionsRequest:
    return pb.ListDetectionsRequest(
        source_id=source_id, range=pb.TimeRange(start=timestamp(start), end=timestamp(end))
    )


def _no_info() -> Unavailable:
    return Unavailable("the export ended before describing itself")


class RecordingMethods(Client):
    stub: DetectorServiceStub

    def coverage(
        self,
        source_id: str,
        *,
        start: float | None = None,
        end: float | None = None,
        timeout_s: float | None = None,
    ) -> Coverage:
        """What a source's recording covers between ``start`` (None: its oldest) and ``end``
        (None: now; the last range is then open-ended while it is recording)."""
        request = coverage_request(source_id, start, end)
        return self._unary(self.stub.GetCoverage, request, timeout_s, Coverage.from_proto)

    def export_stream(
        self,
        source_id: str,
        start: float,
        end: float,
        *,
        offset: int = 0,
        limit: int = 0,
        timeout_s: float | None = None,
    ) -> Stream[ExportInfo | bytes]:
        """[start, end) of a source's recording as one MP4 (joined, not re-encoded): its
        ExportInfo, then its bytes from ``offset`` (at most ``limit``; 0: to the end)."""
        request = export_request(source_id, start, end, offset, limit)
        return self._stream(self.stub.ExportRecording, request, export_item, timeout_s)

    def export(
        self,
        source_id: str,
        start: float,
        end: float,
        *,
        path: str | pathlib.Path | None = None,
        timeout_s: float | None = None,
    ) -> Recording:
        """The MP4 of [start, end): in ``Recording.data``, or written to ``path``."""
        info: ExportInfo | None = None
        parts: list[bytes] = []
        with self.export_stream(source_id, start, end, timeout_s=timeout_s) as stream:
            out: BinaryIO | None = open(path, "wb") if path is not None else None  # noqa: SIM115
            try:
                for item in stream:
                    if isinstance(item, ExportInfo):
                        info = item
                    elif out is not None:
                        out.write(item)
                    else:
                        parts.append(item)
            finally:
                if out is not None:
                    out.close()
        if info is None:
            raise _no_info()
        return Recording(info, b"".join(parts), None if path is None else str(path))

    def snapshot(
        self, source_id: str, *, at: float | None = None, timeout_s: float | None = None
    ) -> Snapshot:
        """The picture of a source at ``at`` from its recording, or its newest live frame."""
        request = snapshot_request(source_id, at)
        return self._unary(self.stub.GetSnapshot, request, timeout_s, Snapshot.from_proto)

    def recorded_detections(
        self, source_id: str, start: float, end: float, *, timeout_s: float | None = None
    ) -> RecordedDetections:
        """What the detector found on a recorded source's frames captured in [start, end) (at
        most the service's export limit long): the frames with objects, and an empty one where
        they disappeared, so a player can draw the boxes over the recorded video."""
        request = detections_request(source_id, start, end)
        return self._unary(
            self.stub.ListDetections, request, timeout_s, RecordedDetections.from_proto
        )


class AsyncRecordingMethods(AsyncClient):
    stub: DetectorServiceAsyncStub

    async def coverage(
        self,
        source_id: str,
        *,
        start: float | None = None,
        end: float | None = None,
        timeout_s: float | None = None,
    ) -> Coverage:
        request = coverage_request(source_id, start, end)
        return await self._unary(self.stub.GetCoverage, request, timeout_s, Coverage.from_proto)

    def export_stream(
        self,
        source_id: str,
        start: float,
        end: float,
        *,
        offset: int = 0,
        limit: int = 0,
        timeout_s: float | None = None,
    ) -> AsyncStream[ExportInfo | bytes]:
        request = export_request(source_id, start, end, offset, limit)
        return self._stream(self.stub.ExportRecording, request, export_item, timeout_s)

    async def export(
        self,
        source_id: str,
        start: float,
        end: float,
        *,
        path: str | pathlib.Path | None = None,
        timeout_s: float | None = None,
    ) -> Recording:
        info: ExportInfo | None = None
        parts: list[bytes] = []
        out = await asyncio.to_thread(open, path, "wb") if path is not None else None
        try:
            async with self.export_stream(source_id, start, end, timeout_s=timeout_s) as stream:
                async for item in stream:
                    if isinstance(item, ExportInfo):
                        info = item
                    elif out is not None:
                        await asyncio.to_thread(out.write, item)
                    else:
                        parts.append(item)
        finally:
            if out is not None:
                await asyncio.to_thread(out.close)
        if info is None:
            raise _no_info()
        return Recording(info, b"".join(parts), None if path is None else str(path))

    async def snapshot(
        self, source_id: str, *, at: float | None = None, timeout_s: float | None = None
    ) -> Snapshot:
        request = snapshot_request(source_id, at)
        return await self._unary(self.stub.GetSnapshot, request, timeout_s, Snapshot.from_proto)

    async def recorded_detections(
        self, source_id: str, start: float, end: float, *, timeout_s: float | None = None
    ) -> RecordedDetections:
        request = detections_request(source_id, start, end)
        return await self._unary(
            self.stub.ListDetections, request, timeout_s, RecordedDetections.from_proto
        )


__all__ = ["AsyncRecordingMethods", "RecordingMethods", "TimeRange"]
