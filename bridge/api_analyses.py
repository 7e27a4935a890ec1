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
from bridge.state import BridgeState, bridge_state
from vigil.analyzer.v1 import analyzer_service_pb2 as apb

router = APIRouter(prefix="/api", tags=["analyses"], responses=ERROR_RESPONSES)

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such job or video."}
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


def _timeout(state: BridgeState) -> float:
    return state.settings.rpc_timeout_s


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
