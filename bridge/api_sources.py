"""``/api/sources`` and ``/api/incidents``: the detector's live sources and incident history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from bridge.errors import ERROR_RESPONSES, ErrorBody, backend
from bridge.models_sources import Incident, IncidentPage, Source, SourceList, SourceSpec
from bridge.state import bridge_state
from vigil.core import source_ids
from vigil.core.errors import InvalidInput

router = APIRouter(prefix="/api", tags=["sources"], responses=ERROR_RESPONSES)

SOURCE_ID = Path(pattern=source_ids.ANCHORED, examples=["lobby-cam"])


@router.get("/sources", summary="Every source with its state and counters")
async def list_sources(request: Request) -> SourceList:
    state = bridge_state(request)
    with backend("detector"):
        sources = await state.detector.list_sources()
    return SourceList(sources=[Source.from_sdk(s) for s in sources])


@router.post(
    "/sources",
    status_code=201,
    summary="Register a source, kept across restarts (always-on ones capture at once, "
    "on-demand ones with their first viewer)",
    responses={409: {"model": ErrorBody, "description": "The id is taken."}},
)
async def add_source(spec: SourceSpec, request: Request) -> Source:
    state = bridge_state(request)
    with backend("detector"):
        # The whole spec: zones, motion and watch rules given at creation are kept too.
        source = await state.detector.add_source_spec(spec.to_sdk())
    return Source.from_sdk(source)


@router.put(
    "/sources/{source_id}",
    summary="Replace a source's spec (its kind may not change), kept across restarts; the "
    "capture restarts only when a stream setting changed, zones apply at once. URIs sent back "
    "masked as they were handed out keep the real ones",
    responses={404: {"model": ErrorBody, "description": "No such source."}},
)
async def update_source(
    source_id: Annotated[str, SOURCE_ID], spec: SourceSpec, request: Request
) -> Source:
    if spec.id != source_id:
        raise InvalidInput("the spec's id must be the source id of the path", field="id")
    state = bridge_state(request)
    with backend("detector"):
        current = await state.detector.get_source(source_id)
        source = await state.detector.update_source(spec.to_sdk(current.spec))
    return Source.from_sdk(source)


@router.delete(
    "/sources/{source_id}",
    summary="Remove a source (its viewers are closed; one added at run time is forgotten)",
    responses={404: {"model": ErrorBody, "description": "No such source."}},
)
async def remove_source(source_id: Annotated[str, SOURCE_ID], request: Request) -> Source:
    state = bridge_state(request)
    with backend("detector"):
        source = await state.detector.remove_source(source_id)
    return Source.from_sdk(source)


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
        page = await state.detector.list_incidents(
            source_id, page_size=page_size, page_token=page_token
        )
    return IncidentPage(
        incidents=[Incident.from_sdk(i) for i in page.items], next_page_token=page.next_page_token
    )
