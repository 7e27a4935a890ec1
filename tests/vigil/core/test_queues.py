"""The newest-wins queue that sits between the frame hub and each viewer (vigil.core.queues)."""

from __future__ import annotations

import asyncio

import pytest

from vigil.core.queues import NewestWinsQueue, QueueClosed


async def test_keeps_order_below_capacity() -> None:
    q: NewestWinsQueue[int] = NewestWinsQueue(3)
    assert q.put(1)
    assert q.put(2)
    assert [await q.get(), await q.get()] == [1, 2]
    assert q.dropped == 0


async def test_full_queue_drops_the_oldest_and_counts_it() -> None:
    q: NewestWinsQueue[int] = NewestWinsQueue(2)
    results = [q.put(i) for i in range(5)]
    assert results == [True, True, False, False, False]
    assert q.dropped == 3
    assert len(q) == 2
    assert [await q.get(), await q.get()] == [3, 4]


async def test_get_waits_for_a_put() -> None:
    q: NewestWinsQueue[str] = NewestWinsQueue(1)
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0.01)
    assert not getter.done()
    q.put("frame")
    assert await asyncio.wait_for(getter, 1) == "frame"


async def test_close_delivers_what_is_left_then_raises() -> None:
    q: NewestWinsQueue[str] = NewestWinsQueue(2)
    q.put("error")
    q.close()
    assert q.closed
    assert await q.get() == "error"
    with pytest.raises(QueueClosed):
        await q.get()


async def test_close_wakes_a_waiting_getter() -> None:
    q: NewestWinsQueue[str] = NewestWinsQueue(2)
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0.01)
    q.close()
    with pytest.raises(QueueClosed):
        await asyncio.wait_for(getter, 1)


async def test_puts_after_close_are_ignored() -> None:
    q: NewestWinsQueue[int] = NewestWinsQueue(1)
    q.close()
    q.put(1)
    assert len(q) == 0
    assert q.dropped == 0


def test_needs_room_for_one_item() -> None:
    with pytest.raises(ValueError, match="maxsize"):
        NewestWinsQueue[int](0)
