"""``/api/analyses``: analysis jobs and chat, over the analyzer (uploads: ``api_uploads``).

Chat answers stream as NDJSON (default) or
Server-Sent Events (``Accept: text/event-stream``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import StreamingResponse

from bridge.errors import ERROR_RESPONSES, BackendError, ErrorBody, backend
from bridge.events import chat_chunk
from bridge.models import (
    JOB_STATES,
    ChatQuestion,
    Job,
    JobPage,
    StartAnalysis,
)
from bridge.state import bridge_state
from vigil.sdk import ChatChunk
from vigil.sdk.analyzer import RECORDING_TIMEOUT_S

router = APIRouter(prefix="/api", tags=["analyses"], responses=ERROR_RESPONSES)

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such job, video, camera or recording."}
}
CHAT_DESCRIPTION = """\
Streams the answer as it is generated. Default: NDJSON (``application/x-ndjson``), one JSON object
a line: ``{"delta": "...", "done": false}`` pieces, then ``{"delta": "", "done": true,
"text": <whole answer>, "cited_times": [<seconds>...], "completion_tokens": n}``. With
``Accept: text/event-stream`` the same objects come as Server-Sent Events
(``event: chat_response``). Errors before the first piece are ordinary JSON error responses; an
error mid-answer arrives as a last ``{"error": {"code", "message"}}`` object (SSE:
``event: error``).
"""


@router.post(
    "/analyses",
    status_code=201,
    summary="Start an analysis of an uploaded video or of a range of a camera's recording",
    responses=NOT_FOUND,
)
async def start_analysis(body: StartAnalysis, request: Request) -> Job:
    state = bridge_state(request)
    options = body.options.to_sdk()
    with backend("analyzer"):
        if body.recording is not None:
            job = await state.analyzer.start_analysis(
                options=options,
                recording=body.recording.to_sdk(),
                timeout_s=RECORDING_TIMEOUT_S,
            )
        else:
            job = await state.analyzer.start_analysis(body.video_id or "", options)
    if body.session_id is not None:
        state.sessions.bind(body.session_id, job.id)
    return Job.from_sdk(job)


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
    with backend("analyzer"):
        page = await bridge.analyzer.list_jobs(
            page_size=page_size, page_token=page_token, state=state
        )
    return JobPage(jobs=[Job.from_sdk(j) for j in page.items], next_page_token=page.next_page_token)


@router.get("/analyses/{job_id}", summary="One analysis, with its result", responses=NOT_FOUND)
async def get_analysis(job_id: str, request: Request) -> Job:
    state = bridge_state(request)
    with backend("analyzer"):
        job = await state.analyzer.get_job(job_id)
    return Job.from_sdk(job)


@router.post("/analyses/{job_id}/cancel", summary="Cancel an analysis", responses=NOT_FOUND)
async def cancel_analysis(job_id: str, request: Request) -> Job:
    state = bridge_state(request)
    with backend("analyzer"):
        job = await state.analyzer.cancel_job(job_id)
    return Job.from_sdk(job)


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
    stream = state.analyzer.chat(job_id, body.question, max_tokens=body.max_tokens)
    with backend("analyzer"):
        # The first piece is awaited here, so a refusal is an ordinary HTTP error response.
        first = await anext(stream, None)

    async def answer() -> AsyncIterator[bytes]:
        def piece(chunk: ChatChunk) -> bytes:
            data = chat_chunk(chunk, job_id)
            return _sse("chat_response", data) if sse else _ndjson(data)

        try:
            if first is not None:
                yield piece(first)
            try:
                with backend("analyzer"):
                    async for chunk in stream:
                        yield piece(chunk)
            except BackendError as e:
                error = {"code": e.code, "message": e.message}
                yield _sse("error", error) if sse else _ndjson({"error": error})
        finally:
            stream.cancel()  # the client left: stop the generation

    media = "text/event-stream" if sse else "application/x-ndjson"
    return StreamingResponse(answer(), media_type=media, headers={"cache-control": "no-cache"})
