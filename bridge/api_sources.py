"""``/api/sources`` and ``/api/incidents``: the detector's live sources and incident history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from bridge.errors import ERROR_RESPONSES, ErrorBody, backend
from bridge.models import Incident, IncidentPage, Source, SourceList, SourceSpec
from bridge.state import bridge_state
from vigil.core import source_ids
from vigil.detector.v1 import detector_service_pb2 as dpb

router = APIRouter(prefix="/api", tags=["sources"], responses=ERROR_RESPONSES)

SOURCE_ID = Path(pattern=source_ids.ANCHORED, examples=["lobby-cam"])


@router.get("/sources", summary="Every source with its state and counters")
async def list_sources(request: Request) -> SourceList:
    state = bridge_state(request)
    with backend("detector"):
        response = await state.detector_stub.ListSources(
            dpb.ListSourcesRequest(), timeout=state.settings.rpc_timeout_s
        )
    return SourceList(sources=[Source.from_pb(s) for s in response.sources])


@router.post(
    "/sources",
    status_code=201,
    summary="Register a source (capture starts with its first viewer)",
    responses={409: {"model": ErrorBody, "description": "The id is taken."}},
)
async def add_source(spec: SourceSpec, request: Request) -> Source:
    state = bridge_state(request)
    with backend("detector"):
        response = await state.detector_stub.AddSource(
            dpb.AddSourceRequest(source=spec.to_pb()), timeout=state.settings.rpc_timeout_s
        )
    return Source.from_pb(response.source)


@router.delete(
    "/sources/{source_id}",
    summary="Remove a source (its viewers are closed)",
    responses={404: {"model": ErrorBody, "description": "No such source."}},
)
async def remove_source(source_id: Annotated[str, SOURCE_ID], request: Request) -> Source:
    state = bridge_state(request)
    with backend("detector"):
        response = await state.detector_stub.RemoveSource(
            dpb.RemoveSourceRequest(source_id=source_id), timeout=state.settings.rpc_timeout_s
        )
    return Source.from_pb(response.source)


@router.get(
    "/incidents",
    summary="Incident history, newest first",
    responses={501: {"model": ErrorBody, "description": "The detector has no incidents yet."}},
)
async def list_incidents(
    request: Request,
    source_id: Annotated[str, Query(pattern=source_ids.ANCHORED_OR_EMPTY)] = "",
    page_size: Annotated[int, Query(ge=1, le=500)] = 50,
    page_token: Annotated[str, Query(max_length=256)] = "",
) -> IncidentPage:
    state = bridge_state(request)
    with backend("detector"):
        response = await state.detector_stub.ListIncidents(
            dpb.ListIncidentsRequest(
                source_id=source_id, page_size=page_size, page_token=page_token
            ),
            timeout=state.settings.rpc_timeout_s,
        )
    return IncidentPage(
        incidents=[Incident.from_pb(i) for i in response.incidents],
        next_page_token=response.next_page_token,
    )
