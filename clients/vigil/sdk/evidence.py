"""Incident evidence packages: the detector clients' ``export_incident``.

Mixins of ``DetectorClient`` and ``AsyncDetectorClient`` (both flavours, the same methods and
values). ``export_incident_stream`` yields the package's ``EvidenceInfo`` and then its bytes;
``export_incident`` writes them to a file (under a temporary name, renamed once complete, so a
failed export never leaves half a package under the asked name). ``vigil verify`` checks one.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO

from vigil.core.errors import Unavailable
from vigil.core.evidence import fingerprint
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.sdk.client import AsyncClient, Client
from vigil.sdk.streams import AsyncStream, Stream

if TYPE_CHECKING:
    from vigil.detector.v1.detector_service_pb2_grpc import (
        DetectorServiceAsyncStub,
        DetectorServiceStub,
    )


@dataclass(frozen=True)
class EvidenceInfo:
    """An incident's evidence package: its size, a file name, the SHA-256 of its signed
    manifest, and the signing key's public half (hex; compare it with the key you trust, never
    trust it because the package names it)."""

    size: int
    content_type: str
    file_name: str
    manifest_sha256: str
    public_key: str
    key_fingerprint: str
    # Where ``export_incident`` wrote it; None from ``export_incident_stream``.
    path: str | None = None
    proto: pb.EvidenceInfo = field(default_factory=pb.EvidenceInfo, repr=False, compare=False)

    @classmethod
    def from_proto(cls, m: pb.EvidenceInfo, path: str | None = None) -> EvidenceInfo:
        return cls(
            size=m.size,
            content_type=m.content_type,
            file_name=m.file_name,
            manifest_sha256=m.manifest_sha256,
            public_key=m.public_key.hex(),
            key_fingerprint=fingerprint(m.public_key),
            path=path,
            proto=m,
        )


def evidence_item(m: pb.ExportIncidentResponse) -> EvidenceInfo | bytes | None:
    which = m.WhichOneof("part")
    if which == "info":
        return EvidenceInfo.from_proto(m.info)
    if which == "chunk":
        return m.chunk
    return None


def _partial(path: pathlib.Path) -> pathlib.Path:
    return path.with_name(f".{path.name}.part")


def _finish(
    info: EvidenceInfo | None, written: int, tmp: pathlib.Path, path: pathlib.Path
) -> EvidenceInfo:
    if info is None:
        raise Unavailable("the export ended before describing itself")
    if written != info.size:
        raise Unavailable(f"the export ended after {written} of {info.size} bytes")
    os.replace(tmp, path)
    return EvidenceInfo.from_proto(info.proto, str(path))


def _request(incident_id: str) -> pb.ExportIncidentRequest:
    return pb.ExportIncidentRequest(incident_id=incident_id)


class EvidenceMethods(Client):
    stub: DetectorServiceStub

    def export_incident_stream(
        self, incident_id: str, *, timeout_s: float | None = None
    ) -> Stream[EvidenceInfo | bytes]:
        """An incident's evidence package (a ZIP file): its EvidenceInfo, then its bytes."""
        return self._stream(
            self.stub.ExportIncident, _request(incident_id), evidence_item, timeout_s
        )

    def export_incident(
        self, incident_id: str, path: str | pathlib.Path, *, timeout_s: float | None = None
    ) -> EvidenceInfo:
        """Write an incident's evidence package to ``path``."""
        target = pathlib.Path(path)
        tmp = _partial(target)
        info: EvidenceInfo | None = None
        written = 0
        try:
            with (
                self.export_incident_stream(incident_id, timeout_s=timeout_s) as stream,
                open(tmp, "wb") as out,
            ):
                for item in stream:
                    if isinstance(item, EvidenceInfo):
                        info = item
                    else:
                        written += out.write(item)
            return _finish(info, written, tmp, target)
        finally:
            tmp.unlink(missing_ok=True)


class AsyncEvidenceMethods(AsyncClient):
    stub: DetectorServiceAsyncStub

    def export_incident_stream(
        self, incident_id: str, *, timeout_s: float | None = None
    ) -> AsyncStream[EvidenceInfo | bytes]:
        return self._stream(
            self.stub.ExportIncident, _request(incident_id), evidence_item, timeout_s
        )

    async def export_incident(
        self, incident_id: str, path: str | pathlib.Path, *, timeout_s: float | None = None
    ) -> EvidenceInfo:
        target = pathlib.Path(path)
        tmp = _partial(target)
        info: EvidenceInfo | None = None
        written = 0
        out: BinaryIO = await asyncio.to_thread(open, tmp, "wb")
        try:
            try:
                async with self.export_incident_stream(incident_id, timeout_s=timeout_s) as stream:
                    async for item in stream:
                        if isinstance(item, EvidenceInfo):
                            info = item
                        else:
                            written += await asyncio.to_thread(out.write, item)
            finally:
                await asyncio.to_thread(out.close)
            return await asyncio.to_thread(_finish, info, written, tmp, target)
        finally:
            await asyncio.to_thread(tmp.unlink, True)
