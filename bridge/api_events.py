"""``/api/events``: the detector's zone and camera-health events, newest first."""

from __future__ import annotations

import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from bridge.errors import ERROR_RESPONSES, backend
from bridge.models_sources import EventPage, SourceEvent
from bridge.state import bridge_state
from vigil.core import source_ids

router = APIRouter(prefix="/api", tags=["sources"], responses=ERROR_RESPONSES)

EventKind = Literal[
    "zone_enter", "zone_leave", "zone_loiter", "line_cross", "camera_frozen", "camera_covered",
    "camera_defocused", "camera_moved",
]  # fmt: skip


def seconds(at: datetime.datetime | None) -> float | None:
    """A query time in seconds since the epoch; one without a zone is UTC, as the API writes."""
    if at is None:
        return None
    return (at if at.tzinfo else at.replace(tzinfo=datetime.UTC)).timestamp()


@router.get("/events", summary="Zone and camera-health events, newest first")
async def list_events(
    request: Request,
    source_id: Annotated[str, Query(pattern=source_ids.ANCHORED_OR_EMPTY)] = "",
    start: Annotated[
        datetime.datetime | None, Query(description="Only events at or after this time (ISO).")
    ] = None,
    end: Annotated[
        datetime.datetime | None, Query(description="Only events before this time (ISO).")
    ] = None,
    kind: Annotated[
        list[EventKind] | None, Query(description="Only these kinds (repeat the parameter).")
    ] = None,
    page_size: Annotated[int, Query(ge=1, le=500)] = 50,
    page_token: Annotated[str, Query(max_length=256)] = "",
) -> EventPage:
    state = bridge_state(request)
    with backend("detector"):
        page = await state.detector.list_events(
            source_id, start=seconds(start), end=seconds(end), kinds=kind or (),
            page_size=page_size, page_token=page_token,
        )  # fmt: skip
    return EventPage(
        events=[SourceEvent.from_sdk(e) for e in page.items], next_page_token=page.next_page_token
    )
