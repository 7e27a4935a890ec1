"""``/api/videos`` and ``/api/analyses``: uploads, analysis jobs and chat, over the analyzer.

Uploads are streamed: the request body goes to the analyzer's ``UploadVideo`` in chunks as it
arrives and is never held whole in memory. Chat answers stream as NDJSON (default) or
Server-Sent Events (``Accept: text/event-stream``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from starlette.requests import ClientDisconnect

from bridge.errors import ERROR_RESPONSES, BackendError, ErrorBody, backend
from bridge.events import chat_chunk
from bridge.models import (
    JOB_STATES,
    ChatQuestion,
    Job,
    JobPage,
    StartAnalysis,
    UploadResult,
    Video,
)
from bridge.state import BridgeState, bridge_state
from vigil import upload_protocol
from vigil.analyzer.v1 import analyzer_service_pb2 as apb

router = APIRouter(prefix="/api", tags=["analyses"], responses=ERROR_RESPONSES)

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such job or video."}
}
UPLOAD_DESCRIPTION = """\
Send the video file itself as the request body (``Content-Type: application/octet-stream`` or
the video's type), with its name in ``?name=``. ``Content-Length`` is required: it is the size
the analyzer checks the upload against. The body is forwarded to the analyzer in chunks as it
arrives. A declared size over the bridge's limit is refused with 413 before any byte is read.
With ``?analyze=true`` an analysis starts as soon as the upload is accepted; ``?session_id=``
names a session that ``join_session`` may use before the job exists (the seed's flow).
"""
CHAT_DESCRIPTION = """\
Streams the answer as it is generated. Default: NDJSON (``application/x-ndjson``), one JSON object
a line: ``{"delta": "...", "done": false}`` pieces, then ``{"delta": "", "done": true,
"text": <whole answer>, "cited_times": [<seconds>...], "completion_tokens": n}``. With
``Accept: text/event-stream`` the same objects come as Server-Sent Events
(``event: chat_response``). Errors before the first piece are ordinary JSON error responses; an
error mid-answer arrives as a last ``{"error": {"code", "message"}}`` object (SSE:
``event: error``).
"""


def _timeout(state: BridgeState) -> float:
    return state.settings.rpc_timeout_s


@router.post(
    "/videos",
    status_code=201,
    summary="Upload a video (streamed to the analyzer)",
    description=UPLOAD_DESCRIPTION,
    responses={
        411: {"model": ErrorBody, "description": "Content-Length missing."},
        413: {"model": ErrorBody, "description": "Larger than the upload limit."},
        415: {"model": ErrorBody, "description": "Multipart bodies are not accepted."},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def upload_video(
    request: Request,
    name: Annotated[str, Query(min_length=1, max_length=255, examples=["lobby.mp4"])],
    analyze: bool = False,
    session_id: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
) -> UploadResult:
    state = bridge_state(request)
    settings = state.settings
    if request.headers.get("content-type", "").startswith("multipart/"):
        raise HTTPException(415, "send the file itself as the request body, not a multipart form")
    declared = request.headers.get("content-length")
    if declared is None:
        raise HTTPException(411, "Content-Length is required: it is the upload's declared size")
    try:
        size = int(declared)
    except ValueError:
        raise HTTPException(400, "Content-Length is not a number") from None
    if size > settings.max_upload_bytes:
        state.metrics.refused.labels("upload_size").inc()
        raise HTTPException(
            413, f"the upload exceeds the limit of {settings.max_upload_bytes} bytes"
        )
    if size <= 0:
        raise HTTPException(400, "the upload is empty")
    header = apb.UploadHeader(name=name, size=size, start_analysis=analyze)
    with backend("analyzer"):
        call = state.analyzer_stub.UploadVideo(None)  # write() mode
        try:
            response = await upload_protocol.send(
                call, header, _chunks(request, settings.upload_chunk_bytes)
            )
        except ClientDisconnect:
            raise HTTPException(400, "the client went away during the upload") from None
    job = Job.from_pb(response.job) if response.HasField("job") else None
    if job is not None and session_id is not None:
        state.sessions.bind(session_id, job.id)
    return UploadResult(video=Video.from_pb(response.video), job=job)


async def _chunks(request: Request, size: int) -> AsyncIterator[bytes]:
    """The request body as it arrives, in pieces of ``size`` bytes (the last may be shorter)."""
    pending = bytearray()
    async for piece in request.stream():
        pending += piece
        while len(pending) >= size:
            yield bytes(pending[:size])
            del pending[:size]
    if pending:
        yield bytes(pending)


@router.post("/analyses", status_code=201, summary="Start an analysis", responses=NOT_FOUND)
async def start_analysis(body: StartAnalysis, request: Request) -> Job:
    state = bridge_state(request)
    with backend("analyzer"):
        response = await state.analyzer_stub.StartAnalysis(
            apb.StartAnalysisRequest(video_id=body.video_id, options=body.options.to_pb()),
            timeout=_timeout(state),
        )
    if body.session_id is not None:
        state.sessions.bind(body.session_id, response.job.id)
    return Job.from_pb(response.job)


@router.get("/analyses", summary="List analyses, newest first")
async def list_analyses(
    request: Request,
    page_size: Annotated[int, Query(ge=1, le=500)] = 50,
    page_token: Annotated[str, Query(max_length=256)] = "",
    state: Annotated[str | None, Query(description=f"One of {', '.join(JOB_STATES)}.")] = None,
) -> JobPage:
    bridge = bridge_state(request)
    if state is not None and state not in JOB_STATES:
        raise HTTPException(400, f"state must be one of {', '.join(JOB_STATES)}")
    wanted = apb.JobState.Value(f"JOB_STATE_{state.upper()}" if state else "JOB_STATE_UNSPECIFIED")
    with backend("analyzer"):
        response = await bridge.analyzer_stub.ListJobs(
            apb.ListJobsRequest(page_size=page_size, page_token=page_token, state=wanted),
            timeout=_timeout(bridge),
        )
    return JobPage(
        jobs=[Job.from_pb(j) for j in response.jobs], next_page_token=response.next_page_token
    )


@router.get("/analyses/{job_id}", summary="One analysis, with its result", responses=NOT_FOUND)
async def get_analysis(job_id: str, request: Request) -> Job:
    state = bridge_state(request)
    with backend("analyzer"):
        response = await state.analyzer_stub.GetJob(
            apb.GetJobRequest(job_id=job_id), timeout=_timeout(state)
        )
    return Job.from_pb(response.job)


@router.post("/analyses/{job_id}/cancel", summary="Cancel an analysis", responses=NOT_FOUND)
async def cancel_analysis(job_id: str, request: Request) -> Job:
    state = bridge_state(request)
    with backend("analyzer"):
        response = await state.analyzer_stub.CancelJob(
            apb.CancelJobRequest(job_id=job_id), timeout=_timeout(state)
        )
    return Job.from_pb(response.job)


def _ndjson(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj) + b"\n"


def _sse(event: str, obj: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


@router.post(
    "/analyses/{job_id}/chat",
    summary="Ask about an analysed video (streamed answer)",
    description=CHAT_DESCRIPTION,
    response_class=StreamingResponse,
    responses={
        **NOT_FOUND,
        200: {
            "content": {
                "application/x-ndjson": {
                    "example": '{"delta":"A person","done":false}\n'
                    '{"delta":"","done":true,"text":"A person enters at [00:01].",'
                    '"cited_times":[1.0],"completion_tokens":9}\n'
                },
                "text/event-stream": {},
            },
            "description": "The answer, streamed.",
        },
        409: {"model": ErrorBody, "description": "No language model configured."},
    },
)
async def chat(job_id: str, body: ChatQuestion, request: Request) -> StreamingResponse:
    state = bridge_state(request)
    sse = "text/event-stream" in request.headers.get("accept", "")
    call = state.analyzer_stub.Chat(
        apb.ChatRequest(job_id=job_id, question=body.question, max_tokens=body.max_tokens)
    )
    with backend("analyzer"):
        # The first piece is awaited here, so a refusal is an ordinary HTTP error response.
        first = await anext(aiter(call), None)

    async def answer() -> AsyncIterator[bytes]:
        def piece(response: apb.ChatResponse) -> bytes:
            data = chat_chunk(response, job_id)
            return _sse("chat_response", data) if sse else _ndjson(data)

        try:
            if first is not None:
                yield piece(first)
            try:
                with backend("analyzer"):
                    async for response in call:
                        yield piece(response)
            except BackendError as e:
                error = {"code": e.code, "message": e.message}
                yield _sse("error", error) if sse else _ndjson({"error": error})
        finally:
            call.cancel()  # the client left: stop the generation

    media = "text/event-stream" if sse else "application/x-ndjson"
    return StreamingResponse(answer(), media_type=media, headers={"cache-control": "no-cache"})
