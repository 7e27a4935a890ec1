"""The source-event log: zone and camera-health events, kept and streamed live.

``record`` is called from any thread (the sources' processing threads, the camera-health checks)
and only queues work: the row goes to the store's writer thread (``event_store.py``: SQLite, or
PostgreSQL shared by replicas) and the event to the event loop, which offers it to every
subscriber. With replicas, the events the others record reach this one's subscribers through
``relay``. A subscriber's queue is bounded; when it is full the oldest waiting event is dropped
(counted and logged): a stuck client that catches up sees what happens now, and the log keeps
everything.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

from detector_service.event_store import EventKeeping
from vigil.detector.v1 import detector_service_pb2 as pb

log = logging.getLogger(__name__)

SOURCE_EVENT = pb.INCIDENT_EVENT_TYPE_SOURCE_EVENT


class EventSubscription:
    """One StreamIncidents call's source events; lives on the event loop."""

    def __init__(self, log_: EventLog, source_id: str, include_snapshot: bool, maxsize: int):
        self.source_id = source_id
        self.include_snapshot = include_snapshot
        self._log = log_
        self._items: collections.deque[pb.StreamIncidentsResponse] = collections.deque()
        self._maxsize = maxsize
        self._ready = asyncio.Event()
        self._closed = False
        #: Events lost because this subscriber had ``maxsize`` events waiting.
        self.dropped = 0

    def __aiter__(self) -> EventSubscription:
        return self

    async def __anext__(self) -> pb.StreamIncidentsResponse:
        while not self._items:
            if self._closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def close(self) -> None:
        self._closed = True
        self._ready.set()
        self._log._subscriptions.discard(self)

    def _offer(self, event: pb.SourceEvent) -> None:
        if self._closed or (self.source_id and self.source_id != event.source_id):
            return
        message = pb.StreamIncidentsResponse(type=SOURCE_EVENT, event=event)
        if not self.include_snapshot:
            message.event.ClearField("snapshot_jpeg")
        if len(self._items) >= self._maxsize:
            self._items.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.warning("source-event subscriber stuck: %d events dropped", self.dropped)
        self._items.append(message)
        self._ready.set()


class EventLog:
    """Keeps, lists and streams source events. ``record`` is thread-safe and never blocks."""

    def __init__(
        self,
        store: EventKeeping,
        loop: asyncio.AbstractEventLoop,
        subscriber_queue: int = 256,
    ) -> None:
        self.store = store
        self.loop = loop
        self.subscriber_queue = subscriber_queue
        self._subscriptions: set[EventSubscription] = set()
        self._closed = False

    # --- any thread ----------------------------------------------------------------------------

    def record(self, event: pb.SourceEvent, snapshot_jpeg: bytes | None) -> None:
        """Store ``event`` (given an id and the time now when it has none) and stream it;
        returns at once.

        ``snapshot_jpeg`` is the frame of the event, stored with it and sent to subscribers that
        asked for snapshots. The caller may go on changing its ``event``: it is copied here.
        """
        if self._closed:
            return
        stored = pb.SourceEvent()
        stored.CopyFrom(event)
        stored.id = stored.id or uuid.uuid4().hex
        if not stored.HasField("at"):
            stored.at.GetCurrentTime()
        stored.ClearField("snapshot_jpeg")
        stored.has_snapshot = bool(snapshot_jpeg)
        self.store.insert(stored, snapshot_jpeg)
        streamed = pb.SourceEvent()
        streamed.CopyFrom(stored)
        if snapshot_jpeg:
            streamed.snapshot_jpeg = snapshot_jpeg
        self.relay(streamed)

    def relay(self, event: pb.SourceEvent) -> None:
        """Stream an event (recorded here, or by another replica); any thread."""
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is streaming
            self.loop.call_soon_threadsafe(self._fanout, event)

    # --- event loop ----------------------------------------------------------------------------

    def subscribe(
        self, source_id: str = "", *, include_snapshot: bool = False
    ) -> EventSubscription:
        """Follow events from now on, of one source or (empty) all."""
        sub = EventSubscription(self, source_id, include_snapshot, self.subscriber_queue)
        if self._closed:
            sub.close()
        else:
            self._subscriptions.add(sub)
        return sub

    def _fanout(self, event: pb.SourceEvent) -> None:
        for sub in list(self._subscriptions):
            sub._offer(event)

    async def list(self, request: pb.ListEventsRequest) -> pb.ListEventsResponse:
        """A page, newest first. Raises ``ValueError`` for a bad page token."""
        return await self.store.list(request)

    # --- shutdown ------------------------------------------------------------------------------

    def close(self) -> None:
        """Finish queued writes, close the store and end the subscriptions (blocking)."""
        if self._closed:
            return
        self._closed = True
        self.store.close()
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._end_subscriptions)

    def _end_subscriptions(self) -> None:
        for sub in list(self._subscriptions):
            sub.close()


async def merged(
    *streams: AsyncIterator[pb.StreamIncidentsResponse],
) -> AsyncIterator[pb.StreamIncidentsResponse]:
    """Messages of several streams as each arrives; ends when all have ended."""
    pending: dict[asyncio.Future[pb.StreamIncidentsResponse], AsyncIterator[Any]] = {
        asyncio.ensure_future(anext(s)): s for s in streams
    }
    try:
        while pending:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                stream = pending.pop(future)
                try:
                    message = future.result()
                except StopAsyncIteration:
                    continue
                pending[asyncio.ensure_future(anext(stream))] = stream
                yield message
    finally:
        for future in pending:
            future.cancel()
