"""Live fan-out of job events to the streams following them.

The bus only carries what happens from now on; history comes from the store. A subscriber that
falls behind is cut off (``lagged``) rather than slowing the job or growing without bound, and
catches up from the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

from analyzer_service.store import Event


class Subscription:
    def __init__(self, job_id: str, size: int) -> None:
        self.job_id = job_id
        self.lagged = False
        self._queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=size)

    def deliver(self, event: Event) -> None:
        if self.lagged:
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.lagged = True

    async def get(self, wait_s: float) -> Event | None:
        """The next live event, or None after ``wait_s`` seconds or once lagged and drained."""
        if self.lagged and self._queue.empty():
            return None
        try:
            return await asyncio.wait_for(self._queue.get(), wait_s)
        except TimeoutError:
            return None


class EventBus(Protocol):
    def publish(self, event: Event) -> None: ...

    def subscribe(self, job_id: str) -> AbstractContextManager[Subscription]: ...


class LocalEventBus:
    """In-process fan-out. Events stored by other replicas arrive as news without a body (job
    id and sequence, from the store's ``watch``): followers read those from the store."""

    def __init__(self, subscriber_queue: int) -> None:
        self._size = subscriber_queue
        self._subscribers: dict[str, set[Subscription]] = {}

    def publish(self, event: Event) -> None:
        for subscription in self._subscribers.get(event.job_id, ()):
            subscription.deliver(event)

    @contextmanager
    def subscribe(self, job_id: str) -> Iterator[Subscription]:
        subscription = Subscription(job_id, self._size)
        self._subscribers.setdefault(job_id, set()).add(subscription)
        try:
            yield subscription
        finally:
            subscribers = self._subscribers[job_id]
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[job_id]
