"""``/ws/incidents``: the page's live feed of incidents and source events, as JSON text messages.

Each WebSocket follows the detector's ``StreamIncidents`` (all sources, snapshots and zone and
camera-health events included) through the SDK and relays it:

* ``{"type": "incident", "event": "opened"|"closed"|"verified"|"reviewed", "incident": {...},
  "snapshot": <base64 JPEG>|null, "alert": bool}``: the incident as ``GET /api/incidents``
  lists it (plus ``recording`` {start, end} and ``zones`` where the detector says them);
  ``alert`` is true for the events that alert people under the source's alert policy (the page
  toasts only those).
* ``{"type": "source_event", "event": {id, source_id, kind, at, zone, class_name, track_id,
  direction, cleared, detail, has_snapshot}, "snapshot": <base64 JPEG>|null}``.
* ``{"type": "gap", "dropped": N}``: this browser read too slowly and the N oldest messages (in
  all, since it connected) were dropped; the page reloads its lists from the REST API.
* ``{"type": "error", "code", "message"}``: the detector's stream failed; the bridge follows it
  again with capped backoff on the same socket (errors retrying cannot fix close it instead, with
  the code from ``vigil.core.errors``).

Each browser has its own bounded queue (drop-oldest, ``QUEUE_SIZE``): a slow one loses its own
oldest messages and never holds up the detector's stream or other browsers. Incidents are rare
and small; a queue of 64 covers a burst across many cameras.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from typing import Any, Protocol

import orjson
from fastapi import APIRouter, WebSocket
from google.protobuf.message import Message
from starlette.websockets import WebSocketDisconnect

from bridge.errors import translate
from bridge.models import iso
from bridge.models_sources import Incident
from bridge.state import BridgeState, bridge_state
from vigil.core.errors import VigilError
from vigil.core.queues import NewestWinsQueue, QueueClosed
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.sdk import Incident as SdkIncident
from vigil.sdk.common import enum_name

log = logging.getLogger(__name__)

router = APIRouter()
ENDPOINT = "incidents"
QUEUE_SIZE = 64


def snapshot(jpeg: bytes) -> str | None:
    return base64.b64encode(jpeg).decode() if jpeg else None


def time_range(m: pb.TimeRange) -> dict[str, str | None]:
    return {"start": iso(m.start), "end": iso(m.end) if m.HasField("end") else None}


def incident_json(m: pb.Incident) -> dict[str, Any]:
    """The incident as the REST API writes it; ``recording`` and ``zones`` from the message where
    the REST model does not carry them yet."""
    out = Incident.from_sdk(SdkIncident.from_proto(m)).model_dump()
    out.setdefault("recording", time_range(m.recording) if m.HasField("recording") else None)
    out.setdefault("zones", list(m.zones))
    return out


def source_event_json(m: pb.SourceEvent) -> dict[str, Any]:
    """A zone or camera-health event in the REST API's shape (ISSUE14's contract)."""
    direction = enum_name(pb.CrossingDirection.Name, m.direction, "CROSSING_DIRECTION_")
    return {
        "id": m.id,
        "source_id": m.source_id,
        "kind": enum_name(pb.SourceEventKind.Name, m.kind, "SOURCE_EVENT_KIND_"),
        "at": iso(m.at),
        "zone": m.zone,
        "class_name": m.class_name,
        "track_id": m.track_id,
        "direction": direction if direction in ("in", "out") else None,
        "cleared": m.cleared,
        "detail": m.detail,
        "has_snapshot": bool(m.snapshot_jpeg),
    }


class StreamItem(Protocol):
    """An item of the SDK's incident stream: an incident's event (its message, the stream's
    response) or, with ``include_events``, a source event (its message, the ``SourceEvent``)."""

    @property
    def proto(self) -> Message: ...


def feed_message(item: StreamItem) -> dict[str, Any] | None:
    """The page's message for one item of the stream; None for kinds this bridge does not know."""
    m = item.proto
    if isinstance(m, pb.StreamIncidentsResponse) and m.type == pb.INCIDENT_EVENT_TYPE_SOURCE_EVENT:
        m = m.event
    if isinstance(m, pb.SourceEvent):
        return {
            "type": "source_event",
            "event": source_event_json(m),
            "snapshot": snapshot(m.snapshot_jpeg),
        }
    if not isinstance(m, pb.StreamIncidentsResponse):
        return None
    kind = enum_name(pb.IncidentEventType.Name, m.type, "INCIDENT_EVENT_TYPE_")
    if kind not in ("opened", "closed", "verified", "reviewed"):
        return None
    return {
        "type": "incident",
        "event": kind,
        "incident": incident_json(m.incident),
        "snapshot": snapshot(m.incident.snapshot_jpeg),
        "alert": m.alert,
    }


async def follow(state: BridgeState, queue: NewestWinsQueue[dict[str, Any]]) -> None:
    """Relay the detector's stream into ``queue`` until cancelled or a final error; retried with
    the bridge's backoff while the detector is away."""
    backoff = state.settings.retry_backoff()
    while True:
        stream = state.detector.incidents(include_snapshot=True, include_events=True)
        try:
            async for event in stream:
                backoff.reset()
                message = feed_message(event)
                if message is not None:
                    queue.put(message)
            failure = translate(VigilError("the detector ended the incident stream"), "detector")
        except VigilError as e:
            failure = translate(e, "detector")
        finally:
            stream.cancel()
        queue.put({"type": "error", "code": failure.code, "message": failure.message})
        if failure.final:
            queue.put({"type": "close", "code": failure.ws_close_code})
            return
        await asyncio.sleep(backoff.next())


@router.websocket("/ws/incidents")
async def incidents(websocket: WebSocket) -> None:
    state = bridge_state(websocket)
    await websocket.accept()
    queue: NewestWinsQueue[dict[str, Any]] = NewestWinsQueue(QUEUE_SIZE)
    connections = state.metrics.connections.labels(ENDPOINT)
    connections.inc()
    follower = asyncio.create_task(follow(state, queue))
    sender = asyncio.create_task(_send(websocket, queue))
    receiver = asyncio.create_task(_receive(websocket))
    tasks = (follower, sender, receiver)
    try:
        await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        connections.dec()
    for result in results:
        if isinstance(result, Exception) and not isinstance(result, WebSocketDisconnect | OSError):
            log.error("incident feed failed", exc_info=result)


async def _send(websocket: WebSocket, queue: NewestWinsQueue[dict[str, Any]]) -> None:
    reported = 0
    while True:
        try:
            message = await queue.get()
        except QueueClosed:
            return
        if queue.dropped > reported:
            reported = queue.dropped
            await websocket.send_text(orjson.dumps({"type": "gap", "dropped": reported}).decode())
        if message["type"] == "close":
            with contextlib.suppress(RuntimeError, OSError):
                await websocket.close(code=message["code"])
            return
        await websocket.send_text(orjson.dumps(message).decode())


async def _receive(websocket: WebSocket) -> None:
    # The page sends nothing; reading notices a browser that left while no incident happened.
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
