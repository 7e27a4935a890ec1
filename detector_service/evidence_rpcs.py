"""ExportIncident: an incident as one signed evidence package (``detector_service.evidence``).

A mixin of ``DetectorServicer`` (which sets ``settings``, ``recorder``, ``exports``, ``incidents``
and ``evidence_key``). The package is built on a thread into the exports folder, streamed in
chunks, and deleted once sent (or the call ended).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc

from detector_service.evidence import Package, build_package
from detector_service.evidence_key import EvidenceKey
from detector_service.incidents.tracker import IncidentTracker
from detector_service.recorder import Recorder
from detector_service.recording.exports import ExportCache
from detector_service.settings import DetectorSettings
from vigil.core import evidence as fmt
from vigil.core.errors import InvalidInput, NotFound
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc

Context = grpc.aio.ServicerContext[object, object]

# Bytes of a package per response message.
CHUNK = 64 * 1024


def _range_s(incident: pb.Incident, max_s: float) -> tuple[float, float] | None:
    """The incident's recording range in seconds, at most ``max_s`` long; None if unrecorded."""
    if not incident.HasField("recording"):
        return None
    start = incident.recording.start.ToNanoseconds() / 1e9
    end = incident.recording.end.ToNanoseconds() / 1e9 if incident.recording.HasField("end") else 0
    return start, min(end or time.time(), start + max_s)


class EvidenceRpcs(pb_grpc.DetectorServiceServicer):
    settings: DetectorSettings
    recorder: Recorder
    exports: ExportCache
    incidents: IncidentTracker
    evidence_key: EvidenceKey

    async def ExportIncident(
        self, request: pb.ExportIncidentRequest, context: Context
    ) -> AsyncIterator[pb.ExportIncidentResponse]:
        if not request.incident_id:
            raise InvalidInput("name the incident to export", field="incident_id")
        incident = await self.incidents.store.get(request.incident_id)
        if incident is None:
            raise NotFound(f"no incident {request.incident_id!r}")
        package = await asyncio.to_thread(self._package, incident)
        try:
            yield pb.ExportIncidentResponse(
                info=pb.EvidenceInfo(
                    size=package.size,
                    content_type=fmt.CONTENT_TYPE,
                    file_name=package.file_name,
                    manifest_sha256=package.manifest_sha256,
                    public_key=self.evidence_key.public,
                )
            )
            with await asyncio.to_thread(package.path.open, "rb") as file:
                while chunk := await asyncio.to_thread(file.read, CHUNK):
                    yield pb.ExportIncidentResponse(chunk=chunk)
        finally:
            # Not awaited: a cancelled call must not wait for the disk to let go of it.
            asyncio.get_running_loop().run_in_executor(None, package.remove)

    def _package(self, incident: pb.Incident) -> Package:
        """Build the package (blocking: a thread), with the recorded frames' detections."""
        frames: list[pb.FrameDetections] = []
        span = _range_s(incident, self.settings.export_max_s)
        if span is not None:
            frames = self.recorder.detections.frames(incident.source_id, *span)
        return build_package(
            incident,
            self.recorder.index,
            self.evidence_key,
            self.exports.folder,
            self.settings.export_max_s,
            frames,
        )
