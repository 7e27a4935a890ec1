"""Operators' feedback: the detector clients' ``review_incident`` and ``incident_stats``.

Mixins of ``DetectorClient`` and ``AsyncDetectorClient`` (both flavours, the same methods and
values; the values are in ``vigil.sdk.review_types``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.sdk.client import AsyncClient, Client
from vigil.sdk.detector_types import Incident
from vigil.sdk.review_types import IncidentStats, review_request, stats_of, stats_request

if TYPE_CHECKING:
    from vigil.detector.v1.detector_service_pb2_grpc import (
        DetectorServiceAsyncStub,
        DetectorServiceStub,
    )

UNARY_METHODS = ("ReviewIncident", "GetIncidentStats")


def reviewed(response: pb.ReviewIncidentResponse) -> Incident:
    return Incident.from_proto(response.incident)


class ReviewMethods(Client):
    stub: DetectorServiceStub

    def review_incident(
        self,
        incident_id: str,
        decision: str,
        note: str = "",
        reviewer: str = "",
        *,
        timeout_s: float | None = None,
    ) -> Incident:
        """Confirm (``decision="confirmed"``) or dismiss (``"dismissed"``: a false alarm) an
        incident, replacing any earlier review; ``note`` at most 500 characters, ``reviewer``
        100. Returns the incident as reviewed; an unknown incident raises NotFound."""
        request = review_request(incident_id, decision, note, reviewer)
        return self._unary(self.stub.ReviewIncident, request, timeout_s, reviewed)

    def incident_stats(
        self, source_id: str = "", *, since: float | None = None, timeout_s: float | None = None
    ) -> list[IncidentStats]:
        """Incidents and false alarms per (source, class, rule), sorted by them, of one source
        (all when empty) opened at or after ``since`` (seconds since the epoch; None: all)."""
        request = stats_request(source_id, since)
        return self._unary(self.stub.GetIncidentStats, request, timeout_s, stats_of)


class AsyncReviewMethods(AsyncClient):
    stub: DetectorServiceAsyncStub

    async def review_incident(
        self,
        incident_id: str,
        decision: str,
        note: str = "",
        reviewer: str = "",
        *,
        timeout_s: float | None = None,
    ) -> Incident:
        request = review_request(incident_id, decision, note, reviewer)
        return await self._unary(self.stub.ReviewIncident, request, timeout_s, reviewed)

    async def incident_stats(
        self, source_id: str = "", *, since: float | None = None, timeout_s: float | None = None
    ) -> list[IncidentStats]:
        request = stats_request(source_id, since)
        return await self._unary(self.stub.GetIncidentStats, request, timeout_s, stats_of)
