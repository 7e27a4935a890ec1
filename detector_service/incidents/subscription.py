"""One StreamIncidents call's events: a bounded queue on the event loop that drops (and counts)
events for a subscriber too far behind, rather than growing without end."""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable

from vigil.detector.v1 import detector_service_pb2 as pb

log = logging.getLogger(__name__)


class IncidentSubscription:
    """One StreamIncidents call's events; lives on the event loop. ``async for`` ends on close."""

    def __init__(
        self,
        discard: Callable[[IncidentSubscription], None],
        source_id: str,
        include_snapshot: bool,
        maxsize: int,
    ) -> None:
        self.source_id = source_id
        self.include_snapshot = include_snapshot
        # Called once closed: the tracker stops offering events to it.
        self._discard = discard
        self._maxsize = maxsize
        self._items: collections.deque[pb.StreamIncidentsResponse] = collections.deque()
        self._ready = asyncio.Event()
        self._closed = False
        #: Events lost because this subscriber had ``subscriber_queue`` events waiting.
        self.dropped = 0

    def __aiter__(self) -> IncidentSubscription:
        return self

    async def __anext__(self) -> pb.StreamIncidentsResponse:
        while not self._items:
            if self._closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def get_nowait(self) -> pb.StreamIncidentsResponse | None:
        """The next waiting event, or None."""
        return self._items.popleft() if self._items else None

    def close(self) -> None:
        """Stop receiving; events already waiting can still be read."""
        self._closed = True
        self._ready.set()
        self._discard(self)

    def offer(self, event: pb.StreamIncidentsResponse) -> None:
        """Queue ``event`` if it is this subscriber's (on the event loop)."""
        if self._closed or (self.source_id and self.source_id != event.incident.source_id):
            return
        if len(self._items) >= self._maxsize:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.warning("incident subscriber stuck: %d events dropped", self.dropped)
            return
        if not self.include_snapshot and event.incident.snapshot_jpeg:
            stripped = pb.StreamIncidentsResponse()
            stripped.CopyFrom(event)
            stripped.incident.ClearField("snapshot_jpeg")
            event = stripped
        self._items.append(event)
        self._ready.set()
