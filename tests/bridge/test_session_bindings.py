"""The session-name store contract, run against both stores: in memory (one bridge) and in Redis
(a real server, shared by replicas). Then what only Redis has: two bridges' stores seeing one
another's names, and outages: calls fail fast with Unavailable, waiting rides a restart out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from bridge.redis_bindings import RedisBindings
from bridge.session_names import MemoryBindings, SessionBindings
from vigil.core.errors import Unavailable
from vigil.devtools.redis_server import RedisServer

Open = Callable[[], SessionBindings]


@pytest.fixture(params=["memory", "redis"])
async def replicas(request: pytest.FixtureRequest) -> AsyncIterator[Open]:
    """Opens the stores that replicas of one deployment would have: in memory there is one
    bridge, so every open is the same store; in Redis each is a store of its own on one server."""
    opened: list[SessionBindings] = []
    if request.param == "memory":
        memory = MemoryBindings()

        def make() -> SessionBindings:
            return memory

    else:
        url: str = request.getfixturevalue("redis_url")

        def make() -> SessionBindings:
            store = RedisBindings(url)
            opened.append(store)
            return store

    yield make
    for store in opened:
        await store.close()


@pytest.fixture
def store(replicas: Open) -> SessionBindings:
    return replicas()


async def test_a_name_is_unbound_until_bound(store: SessionBindings) -> None:
    assert await store.get("s1") is None
    await store.bind("s1", "job-1")
    assert await store.get("s1") == "job-1"
    assert await store.get("s2") is None


async def test_binding_again_moves_the_name(store: SessionBindings) -> None:
    await store.bind("s1", "job-1")
    await store.bind("s1", "job-2")
    assert await store.get("s1") == "job-2"


async def test_wait_returns_a_bound_name_at_once(store: SessionBindings) -> None:
    await store.bind("s1", "job-1")
    async with asyncio.timeout(5):
        assert await store.wait("s1") == "job-1"


async def test_waiters_on_any_replica_get_the_binding(replicas: Open) -> None:
    here, there = replicas(), replicas()
    waiters = [asyncio.create_task(store.wait("s1")) for store in (here, here, there)]
    other = asyncio.create_task(there.wait("s2"))
    await asyncio.sleep(0.3)  # let them all start waiting (and poll, in Redis)
    assert not any(w.done() for w in waiters)
    await here.bind("s1", "job-1")
    async with asyncio.timeout(5):
        assert await asyncio.gather(*waiters) == ["job-1"] * 3
    assert not other.done()
    other.cancel()
    await asyncio.gather(other, return_exceptions=True)


async def test_names_are_shared_and_outlive_a_store(redis_url: str) -> None:
    first = RedisBindings(redis_url)
    await first.bind("s1", "job-1")
    await first.close()
    second = RedisBindings(redis_url)
    try:
        assert await second.get("s1") == "job-1"
    finally:
        await second.close()


async def test_redis_down_fails_fast_and_recovers(
    redis_url: str, redis_server: RedisServer
) -> None:
    store = RedisBindings(redis_url)
    try:
        await store.bind("s1", "job-1")
        redis_server.stop()
        with pytest.raises(Unavailable, match="cannot reach Redis"):
            await store.get("s1")
        with pytest.raises(Unavailable, match="job job-2 is not bound"):
            await store.bind("s2", "job-2")
        # A joiner waiting while Redis is down gets its name once Redis is back and it is bound.
        waiter = asyncio.create_task(store.wait("s3"))
        await asyncio.sleep(0.5)
        redis_server.start()
        assert await store.get("s1") == "job-1"  # kept across the restart
        await store.bind("s3", "job-3")
        async with asyncio.timeout(5):
            assert await waiter == "job-3"
    finally:
        if redis_server.process is None:
            redis_server.start()
        await store.close()
