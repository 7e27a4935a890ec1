from __future__ import annotations

import asyncio

import pytest

from vigil.core.queues import NewestWinsQueue, QueueClosed


async def test_full_queue_keeps_the_newest_and_counts_drops() -> None:
    queue: NewestWinsQueue[int] = NewestWinsQueue(2)
    for i in range(5):
        queue.put(i)
    assert queue.dropped == 3
    assert [await queue.get(), await queue.get()] == [3, 4]


async def test_get_waits_for_put_and_close_ends_it() -> None:
    queue: NewestWinsQueue[str] = NewestWinsQueue(1)
    waiter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.put("a")
    assert await waiter == "a"
    queue.put("b")
    queue.close()
    assert await queue.get() == "b"
    with pytest.raises(QueueClosed):
        await queue.get()


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        NewestWinsQueue[int](0)
