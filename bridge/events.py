"""The one translation from the analyzer's gRPC events to the seed's session events.

Shared by ``/ws/session`` and Socket.IO, so both speak exactly the same events:

================================  ==========================================================
analyzer event                    seed event and its data
================================  ==========================================================
``progress``                      ``analysis_progress`` {percent, stage, message, queue_position}
``long_video_detected``           ``long_video_detected`` {duration_s, duration_minutes, message}
``thinking``                      ``ai_thinking`` {message, frame_count}
``complete``                      ``analysis_complete`` {result, timings}
``error`` (failed or cancelled)   ``error`` {code, message, retryable}
``ChatResponse`` (not last)       ``chat_response`` {delta, done: false}
``ChatResponse`` (last)           ``chat_response`` {delta, done: true, text, cited_times}
================================  ==========================================================

Every job event's data also carries ``session_id``, ``job_id`` and ``sequence`` (the job's own
event number, from 1 without gaps): a client that reconnects joins with the last ``sequence`` it
saw and gets only what came after. Stage names are the seed's: initialization, frame_extraction,
ai_inference, complete (plus queued and detection).
"""

from __future__ import annotations

from typing import Any

from bridge.models import Result, stage, timings
from vigil.core.errors import ERRORS
from vigil.sdk import AnalysisEvent, ChatChunk, ErrorInfo

# Events the client may send; everything else is answered with an ``error`` event.
CLIENT_EVENTS = frozenset({"join_session", "leave_session", "ping", "chat"})


def job_event(event: AnalysisEvent, session_id: str) -> tuple[str, dict[str, Any]]:
    """The seed event (name, data) for one analyzer event."""
    data: dict[str, Any] = {
        "session_id": session_id,
        "job_id": event.job_id,
        "sequence": event.sequence,
    }
    if event.time is not None:
        data["time"] = event.time
    if event.kind == "progress":
        data.update(
            percent=round(event.percent, 2),
            stage=stage(event.stage),
            message=event.message,
            queue_position=event.queue_position,
        )
        return "analysis_progress", data
    if event.kind == "long_video":
        data.update(
            duration_s=event.duration_s,
            duration_minutes=round(event.duration_s / 60, 1),
            message=event.message,
        )
        return "long_video_detected", data
    if event.kind == "thinking":
        data.update(message=event.message, frame_count=event.frame_count)
        return "ai_thinking", data
    if event.result is not None and event.timings is not None:  # "complete"
        result = Result.from_sdk(event.result).model_dump()
        data.update(result=result, timings=timings(event.timings))
        return "analysis_complete", data
    # "error"; anything else the bridge cannot read is said so rather than dropped silently.
    error = event.error or ErrorInfo("UNKNOWN_EVENT", f"unknown analyzer event {event.kind!r}")
    data.update(code=error.code, message=error.message, retryable=error.retryable)
    return "error", data


def chat_chunk(chunk: ChatChunk, job_id: str) -> dict[str, Any]:
    """``chat_response`` data for one piece of a streamed answer."""
    data: dict[str, Any] = {"job_id": job_id, "delta": chunk.delta, "done": chunk.done}
    if chunk.done:
        data["text"] = chunk.text
        data["cited_times"] = list(chunk.cited_times_s)
        data["completion_tokens"] = chunk.completion_tokens
    return data


def error_data(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """``error`` data for a problem of the bridge or the request (not a job's own failure); like
    HTTP error bodies, it says ``"retryable": true`` when the code's row in the table does."""
    contract = ERRORS.get(code)
    again = {"retryable": True} if contract is not None and contract.retryable else {}
    return {"code": code, "message": message, **again, **extra}
