"""``/api/sources/{id}/coverage``, ``recording.mp4``, ``snapshot.jpg`` and ``detections``: a
source's recording.

``recording.mp4`` serves a time range as one MP4 with HTTP range requests, so a ``<video>``
element can seek: each request becomes one ExportRecording call for just those bytes (its
``offset`` and ``limit``); the detector keeps the joined file for a short while, so the many
range requests of one playback join the range once. One range per request (``bytes=a-b``,
``bytes=a-`` or ``bytes=-n``); several ranges, or a malformed header, get the whole file, as
RFC 9110 allows.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response, StreamingResponse

from bridge.errors import ERROR_RESPONSES, ErrorBody, backend
from bridge.models_recordings import Coverage, RecordedDetections
from bridge.state import bridge_state
from vigil.core import source_ids
from vigil.sdk import ExportInfo
from vigil.sdk.streams import AsyncStream

router = APIRouter(prefix="/api", tags=["recordings"], responses=ERROR_RESPONSES)

SOURCE_ID = Path(pattern=source_ids.ANCHORED, examples=["lobby-cam"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such source, or nothing recorded."}
}
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _seconds(at: datetime.datetime) -> float:
    # A time without a zone is UTC, as the API writes its own.
    if at.tzinfo is None:
        at = at.replace(tzinfo=datetime.UTC)
    return at.timestamp()


def _iso(at: float) -> str:
    moment = datetime.datetime.fromtimestamp(at, datetime.UTC).replace(tzinfo=None)
    return moment.isoformat() + "Z"


@router.get(
    "/sources/{source_id}/coverage",
    summary="The time ranges a source's recording covers (between them: gaps)",
    responses=NOT_FOUND,
)
async def coverage(
    source_id: Annotated[str, SOURCE_ID],
    request: Request,
    start: Annotated[datetime.datetime | None, Query(description="Default: the oldest.")] = None,
    end: Annotated[datetime.datetime | None, Query(description="Default: now.")] = None,
) -> Coverage:
    state = bridge_state(request)
    with backend("detector"):
        found = await state.detector.coverage(
            source_id,
            start=_seconds(start) if start is not None else None,
            end=_seconds(end) if end is not None else None,
        )
    return Coverage.from_sdk(found)


def parse_range(header: str | None) -> tuple[int | None, int | None] | None:
    """(first, last) of a single ``Range: bytes=`` range; (None, n) is the last n bytes; None
    means the whole file."""
    if not header:
        return None
    match = _RANGE.match(header.replace(" ", ""))
    if match is None or not (match.group(1) or match.group(2)):
        return None
    first = int(match.group(1)) if match.group(1) else None
    last = int(match.group(2)) if match.group(2) else None
    if first is not None and last is not None and last < first:
        return None  # not a valid range: ignored, the whole file is sent
    return first, last


async def _info(stream: AsyncStream[ExportInfo | bytes]) -> ExportInfo:
    with backend("detector"):
        first = await anext(stream)
    if not isinstance(first, ExportInfo):  # pragma: no cover - the detector sends it first
        raise RuntimeError("the export did not start with its description")
    return first


async def _body(stream: AsyncStream[ExportInfo | bytes]) -> AsyncIterator[bytes]:
    try:
        async for chunk in stream:
            if isinstance(chunk, bytes):
                yield chunk
    finally:
        stream.cancel()


@router.get(
    "/sources/{source_id}/recording.mp4",
    summary="A time range of a source's recording as one MP4 (joined, not re-encoded), with "
    "HTTP range requests",
    description="The file starts at the keyframe at or before `start`; the `X-Recording-Start` "
    "and `X-Recording-End` headers say what it covers (ISO 8601 UTC), so a player can map its "
    "time to the wall clock. Gaps inside play as a held picture. Send `Range: bytes=a-b`, "
    "`bytes=a-` or `bytes=-n` for part of it (206; 416 past the end).",
    response_class=Response,
    responses={
        200: {"content": {"video/mp4": {}}, "description": "The whole file."},
        206: {"content": {"video/mp4": {}}, "description": "The asked range of it."},
        416: {"description": "The range starts past the file's end."},
        **NOT_FOUND,
    },
)
async def recording(
    source_id: Annotated[str, SOURCE_ID],
    request: Request,
    start: Annotated[datetime.datetime, Query()],
    end: Annotated[datetime.datetime, Query()],
) -> Response:
    state = bridge_state(request)
    detector = state.detector
    begin, finish = _seconds(start), _seconds(end)
    wanted = parse_range(request.headers.get("range"))
    if wanted is not None and wanted[0] is None:
        # The last n bytes: the size comes first (the detector's cache makes this cheap).
        probe = detector.export_stream(source_id, begin, finish, limit=1)
        size = (await _info(probe)).size
        probe.cancel()
        wanted = (max(size - (wanted[1] or 0), 0), None)
    offset = (wanted[0] or 0) if wanted is not None else 0
    last = wanted[1] if wanted is not None else None
    limit = last - offset + 1 if last is not None else 0
    stream = detector.export_stream(source_id, begin, finish, offset=offset, limit=limit)
    info = await _info(stream)
    headers = {
        "Accept-Ranges": "bytes",
        # What the file's time 0 and its end are on the wall clock.
        "X-Recording-Start": _iso(info.start),
        "X-Recording-End": _iso(info.end),
    }
    if wanted is not None and offset >= info.size:
        stream.cancel()
        headers["Content-Range"] = f"bytes */{info.size}"
        return Response(status_code=416, headers=headers)
    stop = info.size - 1 if last is None else min(last, info.size - 1)
    headers["Content-Length"] = str(stop - offset + 1)
    status = 200
    if wanted is not None:
        status = 206
        headers["Content-Range"] = f"bytes {offset}-{stop}/{info.size}"
    return StreamingResponse(
        _body(stream), status_code=status, media_type="video/mp4", headers=headers
    )


@router.get(
    "/sources/{source_id}/snapshot.jpg",
    summary="One picture of a source: from its recording at a time, or its newest live frame",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, **NOT_FOUND},
)
async def snapshot(
    source_id: Annotated[str, SOURCE_ID],
    request: Request,
    at: Annotated[
        datetime.datetime | None, Query(description="From the recording; default: live.")
    ] = None,
) -> Response:
    state = bridge_state(request)
    with backend("detector"):
        shot = await state.detector.snapshot(source_id, at=_seconds(at) if at is not None else None)
    headers = {"X-Snapshot-At": _iso(shot.at), "Cache-Control": "no-store"}
    return Response(shot.jpeg, media_type="image/jpeg", headers=headers)


@router.get(
    "/sources/{source_id}/detections",
    summary="The objects detected on a source's recorded frames in a time range",
    description="The frames the detector ran on that show objects, oldest first, and an empty "
    "one where the objects disappeared (frames between them show what the one before shows): "
    "a player draws the boxes of the newest frame at or before the picture it shows. The range "
    "may be at most the detector's export limit long.",
    responses=NOT_FOUND,
)
async def detections(
    source_id: Annotated[str, SOURCE_ID],
    request: Request,
    start: Annotated[datetime.datetime, Query()],
    end: Annotated[datetime.datetime, Query()],
) -> RecordedDetections:
    state = bridge_state(request)
    with backend("detector"):
        found = await state.detector.recorded_detections(source_id, _seconds(start), _seconds(end))
    return RecordedDetections.from_sdk(found)
