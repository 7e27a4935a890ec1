"""``/api/incidents/{id}/evidence.zip``: an incident's signed evidence package, as a download.

The detector builds the package (ExportIncident) and the bridge passes its bytes along as they
come; the headers carry what ``vigil verify`` needs besides the file: the signing key's public
half (compare it with the one the deployment publishes) and the signed manifest's SHA-256.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response, StreamingResponse

from bridge.errors import ERROR_RESPONSES, ErrorBody, backend
from bridge.state import bridge_state
from vigil.core.evidence import CONTENT_TYPE
from vigil.sdk import EvidenceInfo
from vigil.sdk.streams import AsyncStream

router = APIRouter(prefix="/api", tags=["incidents"], responses=ERROR_RESPONSES)

INCIDENT_ID = Path(pattern=r"^[A-Za-z0-9_-]{1,128}$", examples=["3f2a9c0d4b6e4f1a8c7d5e2b1a0f9e8d"])


async def _body(stream: AsyncStream[EvidenceInfo | bytes]) -> AsyncIterator[bytes]:
    try:
        async for chunk in stream:
            if isinstance(chunk, bytes):
                yield chunk
    finally:
        stream.cancel()


@router.get(
    "/incidents/{incident_id}/evidence.zip",
    summary="An incident as one signed evidence package (ZIP): clip, snapshot, record, "
    "detections and a signed manifest",
    description="Check it with `vigil verify FILE --public-key KEY`. `X-Evidence-Public-Key` is "
    "the signing key's public half (hex): compare it with the key the deployment publishes, "
    "never trust it because the response names it. `X-Manifest-SHA256` is the signed "
    "manifest's hash.",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE: {}}, "description": "The package."},
        404: {"model": ErrorBody, "description": "No such incident."},
    },
)
async def evidence(incident_id: Annotated[str, INCIDENT_ID], request: Request) -> Response:
    stream = bridge_state(request).detector.export_incident_stream(incident_id)
    with backend("detector"):
        first = await anext(stream)
    if not isinstance(first, EvidenceInfo):  # pragma: no cover - the detector sends it first
        stream.cancel()
        raise RuntimeError("the export did not start with its description")
    headers = {
        "Content-Length": str(first.size),
        "Content-Disposition": f'attachment; filename="{first.file_name}"',
        "X-Evidence-Public-Key": first.public_key,
        "X-Manifest-SHA256": first.manifest_sha256,
        "Cache-Control": "no-store",
    }
    return StreamingResponse(_body(stream), media_type=CONTENT_TYPE, headers=headers)
