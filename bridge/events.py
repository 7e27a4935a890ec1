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

from bridge.models import STAGES, Result, timings
from vigil.analyzer.v1 import analyzer_service_pb2 as apb
from vigil.core.errors import ERRORS

# Events the client may send; everything else is answered with an ``error`` event.
CLIENT_EVENTS = frozenset({"join_session", "leave_session", "ping", "chat"})


def job_event(
    event: apb.StreamAnalysisEventsResponse, session_id: str
) -> tuple[str, dict[str, Any]]:
    """The seed event (name, data) for one analyzer event."""
    data: dict[str, Any] = {
        "session_id": session_id,
        "job_id": event.job_id,
        "sequence": event.sequence,
    }
    if event.HasField("time"):
        data["time"] = event.time.seconds + event.time.nanos / 1e9
    kind = event.WhichOneof("event")
    if kind == "progress":
        p = event.progress
        data.update(
            percent=round(p.percent, 2),
            stage=STAGES.get(p.stage, "unspecified"),
            message=p.message,
            queue_position=p.queue_position,
        )
        return "analysis_progress", data
    if kind == "long_video_detected":
        lv = event.long_video_detected
        data.update(
            duration_s=lv.duration_s,
            duration_minutes=round(lv.duration_s / 60, 1),
            message=lv.message,
        )
        return "long_video_detected", data
    if kind == "thinking":
        data.update(message=event.thinking.message, frame_count=event.thinking.frame_count)
        return "ai_thinking", data
    if kind == "complete":
        c = event.complete
        data.update(result=Result.from_pb(c.result).model_dump(), timings=timings(c.timings))
        return "analysis_complete", data
    if kind == "error":
        e = event.error
        data.update(code=e.code, message=e.message, retryable=e.retryable)
        return "error", data
    # An event kind newer than this bridge: say so rather than drop it silently.
    data.update(code="UNKNOWN_EVENT", message=f"unknown analyzer event {kind!r}")
    return "error", data


def chat_chunk(response: apb.ChatResponse, job_id: str) -> dict[str, Any]:
    """``chat_response`` data for one piece of a streamed answer."""
    data: dict[str, Any] = {"job_id": job_id, "delta": response.delta, "done": response.done}
    if response.done:
        data["text"] = response.text
        data["cited_times"] = list(response.cited_times_s)
        data["completion_tokens"] = response.completion_tokens
    return data


def error_data(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """``error`` data for a problem of the bridge or the request (not a job's own failure); like
    HTTP error bodies, it says ``"retryable": true`` when the code's row in the table does."""
    contract = ERRORS.get(code)
    again = {"retryable": True} if contract is not None and contract.retryable else {}
    return {"code": code, "message": message, **again, **extra}
