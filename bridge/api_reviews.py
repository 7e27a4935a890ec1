"""``/api/incidents/{id}/review`` and ``/api/incidents/stats``: operators confirm or dismiss
incidents, and the false-alarm rate per source, class and watch rule."""

from __future__ import annotations

import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request

from bridge.api_events import seconds
from bridge.api_evidence import INCIDENT_ID
from bridge.errors import ERROR_RESPONSES, ErrorBody, backend
from bridge.models_reviews import IncidentStats, IncidentStatsList, ReviewBody
from bridge.models_sources import Incident
from bridge.state import bridge_state
from vigil.core import source_ids

router = APIRouter(prefix="/api", tags=["incidents"], responses=ERROR_RESPONSES)

# Who reviews, as the bridge tells the detector: the bridge knows a token, not users, so nobody.
REVIEWER = ""


@router.post(
    "/incidents/{incident_id}/review",
    summary="Confirm an incident, or dismiss it as a false alarm (replacing any earlier review)",
    responses={404: {"model": ErrorBody, "description": "No such incident."}},
)
async def review_incident(
    incident_id: Annotated[str, INCIDENT_ID], body: ReviewBody, request: Request
) -> Incident:
    state = bridge_state(request)
    with backend("detector"):
        incident = await state.detector.review_incident(
            incident_id, body.decision, body.note, REVIEWER
        )
    return Incident.from_sdk(incident)


@router.get("/incidents/stats", summary="Incidents and false alarms per source, class and rule")
async def incident_stats(
    request: Request,
    source_id: Annotated[str, Query(pattern=source_ids.ANCHORED_OR_EMPTY)] = "",
    since: Annotated[
        datetime.datetime | None, Query(description="Only incidents opened at or after (ISO).")
    ] = None,
) -> IncidentStatsList:
    state = bridge_state(request)
    with backend("detector"):
        stats = await state.detector.incident_stats(source_id, since=seconds(since))
    return IncidentStatsList(stats=[IncidentStats.from_sdk(s) for s in stats])
