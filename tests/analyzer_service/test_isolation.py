"""Media workers: a crash, hang or cancellation costs one call, never the service."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

import pytest

from analyzer_service.isolation import MediaWorkers, RemoteError, WorkerCrashed, WorkerTimeout


@pytest.fixture
async def workers() -> AsyncIterator[MediaWorkers]:
    pool = MediaWorkers(1)
    yield pool
    await pool.close()


async def test_runs_in_a_child_process(workers: MediaWorkers) -> None:
    pid = await workers.call(10, os.getpid)
    assert pid != os.getpid()
    # A healthy worker is reused.
    assert await workers.call(10, os.getpid) == pid


async def test_an_exception_is_reported_and_the_worker_kept(workers: MediaWorkers) -> None:
    pid = await workers.call(10, os.getpid)
    with pytest.raises(RemoteError, match="invalid literal") as caught:
        await workers.call(10, int, "not a number")
    assert caught.value.kind == "ValueError"
    assert await workers.call(10, os.getpid) == pid


async def test_a_crash_fails_the_call_and_a_new_worker_takes_over(workers: MediaWorkers) -> None:
    pid = await workers.call(10, os.getpid)
    with pytest.raises(WorkerCrashed):
        await workers.call(10, os.abort)
    new_pid = await workers.call(10, os.getpid)
    assert new_pid not in (pid, os.getpid())


async def test_a_hang_is_killed_at_the_limit(workers: MediaWorkers) -> None:
    pid = await workers.call(10, os.getpid)
    started = time.monotonic()
    with pytest.raises(WorkerTimeout):
        await workers.call(0.5, time.sleep, 30)
    assert time.monotonic() - started < 5
    assert await workers.call(10, os.getpid) != pid


async def test_cancelling_a_call_kills_its_worker(workers: MediaWorkers) -> None:
    pid = await workers.call(10, os.getpid)
    task = asyncio.create_task(workers.call(60, time.sleep, 30))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(ProcessLookupError):
        # Reaped: the killed child no longer exists.
        os.kill(pid, 0)
    assert await workers.call(10, os.getpid) != pid


async def test_calls_wait_for_a_free_worker(workers: MediaWorkers) -> None:
    started = time.monotonic()
    await asyncio.gather(workers.call(10, time.sleep, 0.4), workers.call(10, time.sleep, 0.4))
    # One worker: the calls ran one after the other.
    assert time.monotonic() - started >= 0.8
