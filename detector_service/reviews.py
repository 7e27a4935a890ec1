"""ReviewIncident and GetIncidentStats: operators confirm or dismiss incidents, and what follows.

A mixin of ``DetectorServicer`` (which sets ``incidents``). A review is kept in the incident store
(a later one replaces it), given to the incident while it is still open (so that its CLOSED event
carries it) and streamed as a REVIEWED event. The statistics count the store: they hold across
restarts, and a changed review changes them.
"""

from __future__ import annotations

import asyncio

import grpc

from detector_service.incidents.review import CONFIRMED, DISMISSED, apply_review
from detector_service.incidents.tracker import IncidentTracker
from vigil.core.errors import InvalidInput, NotFound
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc

Context = grpc.aio.ServicerContext[object, object]

MAX_NOTE = 500
MAX_REVIEWER = 100


def review_of(request: pb.ReviewIncidentRequest) -> pb.Review:
    """The review a request asks to keep, stamped now; raises ``InvalidInput`` for a bad one."""
    if not request.incident_id:
        raise InvalidInput("name the incident to review", field="incident_id")
    if request.decision not in (CONFIRMED, DISMISSED):
        raise InvalidInput("decision must be CONFIRMED or DISMISSED", field="decision")
    if len(request.note) > MAX_NOTE:
        raise InvalidInput(f"note is longer than {MAX_NOTE} characters", field="note")
    if len(request.reviewer) > MAX_REVIEWER:
        raise InvalidInput(f"reviewer is longer than {MAX_REVIEWER} characters", field="reviewer")
    review = pb.Review(decision=request.decision, note=request.note, reviewer=request.reviewer)
    review.reviewed_at.GetCurrentTime()
    return review


class ReviewRpcs(pb_grpc.DetectorServiceServicer):
    incidents: IncidentTracker

    async def ReviewIncident(
        self, request: pb.ReviewIncidentRequest, context: Context
    ) -> pb.ReviewIncidentResponse:
        review = review_of(request)
        tracker = self.incidents
        tracker.change_open(request.incident_id, lambda incident: apply_review(incident, review))
        if not await asyncio.wrap_future(tracker.store.review(request.incident_id, review)):
            raise NotFound(f"no incident {request.incident_id!r}")
        incident = await tracker.store.get(request.incident_id)
        if incident is None:  # pragma: no cover - incidents are never deleted
            raise NotFound(f"no incident {request.incident_id!r}")
        tracker.publish(pb.INCIDENT_EVENT_TYPE_REVIEWED, incident)
        incident.ClearField("snapshot_jpeg")
        return pb.ReviewIncidentResponse(incident=incident)

    async def GetIncidentStats(
        self, request: pb.GetIncidentStatsRequest, context: Context
    ) -> pb.GetIncidentStatsResponse:
        since_ns = request.since.ToNanoseconds() if request.HasField("since") else None
        stats = await asyncio.wrap_future(self.incidents.store.stats(request.source_id, since_ns))
        return pb.GetIncidentStatsResponse(stats=stats)
