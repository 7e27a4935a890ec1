"""Bounded newest-wins queues for live data: when full, the oldest item goes and is counted.

Live video is worthless late: a viewer that cannot keep up should see the newest frame next, not
a backlog. Each consumer owns one queue, so a slow one only ever loses its own frames. The queue
belongs to one event loop; producers on other threads use ``loop.call_soon_threadsafe(q.put, x)``.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Generic, TypeVar

T = TypeVar("T")


class QueueClosed(Exception):
    """The queue was closed and is empty."""


class NewestWinsQueue(Generic[T]):
    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._items: collections.deque[T] = collections.deque()
        self._maxsize = maxsize
        self._ready = asyncio.Event()
        self._closed = False
        #: Items dropped because the consumer was behind.
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, item: T) -> bool:
        """Add ``item``; when full, drop (and count) the oldest and return False.

        Items put after ``close`` are ignored, and not counted as drops: nobody will read them.
        """
        if self._closed:
            return True
        kept_all = True
        if len(self._items) >= self._maxsize:
            self._items.popleft()
            self.dropped += 1
            kept_all = False
        self._items.append(item)
        self._ready.set()
        return kept_all

    def wake(self) -> None:
        """Wake a consumer blocked in ``wait`` without adding an item."""
        self._ready.set()

    async def wait(self) -> None:
        """Wait until an item is waiting, the queue is closed, or ``wake`` was called."""
        if self._items or self._closed:
            return
        self._ready.clear()
        await self._ready.wait()

    async def get(self) -> T:
        """The oldest waiting item; waits for one. Raises ``QueueClosed`` once closed and empty."""
        while not self._items:
            if self._closed:
                raise QueueClosed
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def close(self) -> None:
        """Wake the consumer; items already queued can still be read."""
        self._closed = True
        self._ready.set()
