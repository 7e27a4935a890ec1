"""``POST /api/videos``: an upload streamed to the analyzer's ``UploadVideo`` as it arrives.

Two bodies are accepted: the file itself (raw body, its name in ``?name=``) and a browser's
``multipart/form-data`` form with one file part (``FormData``), parsed as it streams. Neither is
ever held whole in memory or on the bridge's disk. Both are under the same limits: the size
limit (413), the idle timeout (408) and the analyzer's per-client share of upload slots (429),
for which the bridge names the browser client in ``x-vigil-client`` metadata.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from starlette.requests import ClientDisconnect

from bridge.clients import client_address
from bridge.errors import ERROR_RESPONSES, ErrorBody, backend
from bridge.forms import MAX_FIELD_BYTES, BadForm, FileForm, boundary_of
from bridge.models import Job, UploadResult, Video
from bridge.settings import BridgeSettings
from bridge.state import BridgeState, bridge_state

router = APIRouter(prefix="/api", tags=["analyses"], responses=ERROR_RESPONSES)

# Seconds the bridge gathers a chunk before it passes on what it has (see ``_rechunked``).
FLUSH_S = 0.25
# What a form may carry besides its file: the other fields, part headers and boundaries.
FORM_OVERHEAD_BYTES = MAX_FIELD_BYTES + 64 * 1024

UPLOAD_DESCRIPTION = """\
Two ways to send the video:

* **The file itself** as the request body (``Content-Type: application/octet-stream`` or the
  video's type), with its name in ``?name=``. ``Content-Length`` is required: it is the size the
  analyzer checks the upload against.
* **A form** (``multipart/form-data``, what a browser's ``FormData`` sends) with exactly one file
  part; its filename names the video unless ``?name=`` is given. Other fields are skipped. Zero
  or several file parts, a missing boundary or a malformed body get 400.

Either way the file is forwarded to the analyzer in chunks as it arrives. A declared size over
the bridge's limit is refused with 413 before any byte is read, and so is a body that passes it
while it streams. A body that sends nothing for ``upload_idle_timeout_s`` ends with 408; nothing
of it is kept. One client may hold only a share of the analyzer's upload slots at once: one more
gets 429 with ``Retry-After``. With ``?analyze=true`` an analysis starts as soon as the upload is
accepted; ``?session_id=`` names a session that ``join_session`` may use before the job exists
(the seed's flow).
"""


@router.post(
    "/videos",
    status_code=201,
    summary="Upload a video (streamed to the analyzer)",
    description=UPLOAD_DESCRIPTION,
    responses={
        408: {"model": ErrorBody, "description": "The body stopped arriving (idle timeout)."},
        411: {"model": ErrorBody, "description": "Content-Length missing (raw body)."},
        413: {"model": ErrorBody, "description": "Larger than the upload limit."},
        429: {"model": ErrorBody, "description": "Too many uploads at once (for this client)."},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                        "required": ["file"],
                    }
                },
            },
        }
    },
)
async def upload_video(
    request: Request,
    name: Annotated[str | None, Query(min_length=1, max_length=255, examples=["lobby.mp4"])] = None,
    analyze: bool = False,
    session_id: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
) -> UploadResult:
    state = bridge_state(request)
    settings = state.settings
    # A body that stalls ends with 408 in the Guard (security.py), as every request body does.
    body = aiter(request.stream())
    content_type = request.headers.get("content-type", "")
    if content_type.lower().startswith("multipart/"):
        declared, chunks = await _form(request, body, content_type, name, settings)
    else:
        declared, chunks = _raw(request, body, name, state)
    client = client_address(request.scope, settings.trusted_proxies)
    with backend("analyzer"):
        try:
            uploaded = await state.analyzer.upload_chunks(
                _rechunked(chunks, settings.upload_chunk_bytes),
                name=declared.name,
                size=declared.size,
                start_analysis=analyze,
                on_behalf_of=client,
            )
        except ClientDisconnect:
            raise HTTPException(400, "the client went away during the upload") from None
    job = Job.from_sdk(uploaded.job) if uploaded.job is not None else None
    if job is not None and session_id is not None:
        await state.sessions.bind(session_id, job.id)
    return UploadResult(video=Video.from_sdk(uploaded.video), job=job)


@dataclass(frozen=True)
class Declared:
    """What the upload says of itself before its bytes: its name, and its size (0: unknown
    until the end)."""

    name: str
    size: int


def _raw(
    request: Request, body: AsyncIterator[bytes], name: str | None, state: BridgeState
) -> tuple[Declared, AsyncIterator[bytes]]:
    settings = state.settings
    if name is None:
        raise HTTPException(400, "query.name: the video's name is required (?name=)")
    declared = request.headers.get("content-length")
    if declared is None:
        raise HTTPException(411, "Content-Length is required: it is the upload's declared size")
    try:
        size = int(declared)
    except ValueError:
        raise HTTPException(400, "Content-Length is not a number") from None
    if size > settings.max_upload_bytes:
        state.metrics.refused.labels("upload_size").inc()
        raise HTTPException(413, _too_large(settings))
    if size <= 0:
        raise HTTPException(400, "the upload is empty")
    return Declared(name, size), body


async def _form(
    request: Request,
    body: AsyncIterator[bytes],
    content_type: str,
    name: str | None,
    settings: BridgeSettings,
) -> tuple[Declared, AsyncIterator[bytes]]:
    """Reads the form up to its file part's headers (the upload's name), then hands on the
    file's bytes as they arrive. The size is unknown until the end: the header says 0."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > settings.max_upload_bytes + FORM_OVERHEAD_BYTES:
        raise HTTPException(413, _too_large(settings))
    try:
        form = FileForm(boundary_of(content_type))
        first: list[bytes] = []
        async for piece in body:
            first += form.feed(piece)
            if form.filename is not None:
                break
        else:
            form.finish()  # the body ended without a file part: raises
    except BadForm as exc:
        raise HTTPException(400, str(exc)) from None
    except ClientDisconnect:
        # Expected from clients that leave; not worth an error traceback in the log.
        raise HTTPException(400, "the client went away during the upload") from None
    assert form.filename is not None
    return Declared(name or form.filename, 0), _form_file(
        form, first, body, settings.max_upload_bytes
    )


async def _form_file(
    form: FileForm, first: list[bytes], body: AsyncIterator[bytes], limit: int
) -> AsyncIterator[bytes]:
    async def pieces() -> AsyncIterator[list[bytes]]:
        yield first
        async for piece in body:
            yield form.feed(piece)
        form.finish()

    received = 0
    try:
        async for found in pieces():
            for data in found:
                received += len(data)
                # The analyzer checks too; refusing here spares it the rest of the body.
                if received > limit:
                    raise HTTPException(413, f"the upload exceeds the limit of {limit} bytes")
                yield data
    except BadForm as exc:
        raise HTTPException(400, str(exc)) from None


async def _rechunked(pieces: AsyncIterable[bytes], size: int) -> AsyncIterator[bytes]:
    """``pieces`` regrouped in chunks of ``size`` bytes, except that what has come is passed on
    once ``FLUSH_S`` went by without a chunk: the analyzer's idle timeout counts the time
    between messages, and a slow but steady browser would otherwise look stalled to it while
    the bridge gathered a whole chunk."""
    loop = asyncio.get_running_loop()
    pending = bytearray()
    last = loop.time()
    async for piece in pieces:
        pending += piece
        while len(pending) >= size:
            yield bytes(pending[:size])
            del pending[:size]
            last = loop.time()
        if pending and loop.time() - last >= FLUSH_S:
            yield bytes(pending)
            pending.clear()
            last = loop.time()
    if pending:
        yield bytes(pending)


def _too_large(settings: BridgeSettings) -> str:
    return f"the upload exceeds the limit of {settings.max_upload_bytes} bytes"
