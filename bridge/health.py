"""``GET /health``: the bridge's own state plus each backend's standard gRPC health.

Always answers HTTP 200 while the bridge process can answer at all: it is a liveness probe, and a
dead backend must not get the bridge restarted. Readiness and the backends' state are in the body:
``{"status": "ok" | "degraded", "services": {"bridge": ..., "detector": ..., "analyzer": ...}}``,
each service one of SERVING, NOT_SERVING, SERVICE_UNKNOWN, UNKNOWN or UNREACHABLE, plus
``"streams": {source_id: viewers}`` for the sources the bridge is relaying now.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from bridge.state import bridge_state
from vigil.core.errors import NotFound, VigilError
from vigil.sdk.client import AsyncClient

router = APIRouter()

SERVING = "SERVING"
UNREACHABLE = "UNREACHABLE"


async def check(client: AsyncClient, deadline_s: float) -> str:
    """The standard health of the client's service; UNREACHABLE when the backend does not
    answer."""
    try:
        return await client.health(timeout_s=deadline_s)
    except NotFound:
        # The server is up but does not host the service (a wrong address, say).
        return "SERVICE_UNKNOWN"
    except VigilError:
        return UNREACHABLE


async def _services(request: Request) -> dict[str, str]:
    state = bridge_state(request)
    timeout = state.settings.health_timeout_s
    detector, analyzer = await asyncio.gather(
        check(state.detector, timeout), check(state.analyzer, timeout)
    )
    return {"bridge": SERVING, "detector": detector, "analyzer": analyzer}


@router.get("/health", tags=["health"], summary="Liveness, plus each backend's state")
async def health(request: Request) -> dict[str, Any]:
    services = await _services(request)
    return {
        "status": "ok" if all(s == SERVING for s in services.values()) else "degraded",
        "services": services,
        "streams": bridge_state(request).frames.sources(),
    }


READY_EXAMPLE: dict[str, Any] = {
    "status": "ok",
    "services": {"bridge": SERVING, "detector": SERVING, "analyzer": SERVING},
}


@router.get(
    "/ready",
    tags=["health"],
    summary="Readiness: 200 when every backend is SERVING, else 503",
    responses={
        200: {"content": {"application/json": {"example": READY_EXAMPLE}}},
        503: {
            "description": "A backend is not SERVING.",
            "content": {
                "application/json": {
                    "example": {
                        **READY_EXAMPLE,
                        "status": "unavailable",
                        "services": {**READY_EXAMPLE["services"], "analyzer": UNREACHABLE},
                    }
                }
            },
        },
    },
)
async def ready(request: Request) -> JSONResponse:
    services = await _services(request)
    ok = all(s == SERVING for s in services.values())
    body = {"status": "ok" if ok else "unavailable", "services": services}
    return JSONResponse(body, status_code=200 if ok else 503)
