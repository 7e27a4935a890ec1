"""The HTTP engine over several servers: least outstanding requests, failover, health.

The servers are ``OpenAIStandIn``s (real HTTP, vLLM's wire format); ``test_vllm_remote`` shows
the failover onto vLLM's own server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from analyzer_service.engine import GenerateRequest
from analyzer_service.engines.vllm_remote import RemoteVllmEngine
from tests.analyzer_service.engines.openai_standin import WORDS, OpenAIStandIn
from tests.llm import texts
from vigil.core.errors import Unavailable

ANSWER = "".join(WORDS)
# Bounds a wait for requests to reach a server (milliseconds unless something is wrong).
WAIT_S = 30

Start = Callable[..., Awaitable[OpenAIStandIn]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    servers: list[OpenAIStandIn] = []

    async def start(**kwargs: object) -> OpenAIStandIn:
        server = OpenAIStandIn(**kwargs)  # type: ignore[arg-type]
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


def engine_over(*servers: OpenAIStandIn) -> RemoteVllmEngine:
    return RemoteVllmEngine([s.url for s in servers], "served-name", connect_timeout_s=2)


async def answer(engine: RemoteVllmEngine, request_id: str) -> str:
    request = GenerateRequest(request_id, "Describe.", [], len(WORDS))
    return "".join([text async for text in texts(engine, request)])


async def test_requests_go_to_the_server_with_fewest_outstanding(start: Start) -> None:
    busy, free = await start(hold=True), await start()
    async with engine_over(busy, free) as engine:
        # Both idle: the first configured takes the first request, which it holds open.
        held = asyncio.create_task(answer(engine, "held"))
        await asyncio.wait_for(busy.arrivals.acquire(), WAIT_S)
        # Round robin would send the second of these to the busy server.
        assert [await answer(engine, f"r{n}") for n in range(3)] == [ANSWER] * 3
        assert (busy.requests, free.requests) == (1, 3)
        busy.release()
        assert await held == ANSWER
        # Equally idle again: they take turns.
        assert [await answer(engine, f"s{n}") for n in range(2)] == [ANSWER] * 2
        assert (busy.requests, free.requests) == (2, 4)


async def test_concurrent_requests_are_spread_evenly(start: Start) -> None:
    arrivals = asyncio.Semaphore(0)
    one, two = await start(hold=True, arrivals=arrivals), await start(hold=True, arrivals=arrivals)
    async with engine_over(one, two) as engine:
        tasks = [asyncio.create_task(answer(engine, f"c{n}")) for n in range(6)]
        for _ in range(6):
            await asyncio.wait_for(arrivals.acquire(), WAIT_S)
        assert (one.in_flight, two.in_flight) == (3, 3)
        one.release()
        two.release()
        assert await asyncio.gather(*tasks) == [ANSWER] * 6


async def test_a_server_that_is_gone_is_skipped(start: Start) -> None:
    gone, alive = await start(), await start()
    await gone.stop()
    async with engine_over(gone, alive) as engine:
        assert [await answer(engine, f"r{n}") for n in range(3)] == [ANSWER] * 3
        assert alive.requests == 3
        assert await engine.health()
        assert engine.endpoints.up_count() == 1


async def test_a_server_answering_503_fails_over(start: Start) -> None:
    overloaded, alive = await start(status=503), await start()
    async with engine_over(overloaded, alive) as engine:
        assert await answer(engine, "r0") == ANSWER
        # The same request, tried on the other server.
        assert overloaded.request_ids == ["r0"]
        assert alive.request_ids == ["r0"]
        assert await engine.health()
        assert engine.endpoints.up_count() == 1


async def test_all_servers_down_is_unavailable(start: Start) -> None:
    overloaded, gone = await start(status=503), await start()
    await gone.stop()
    async with engine_over(overloaded, gone) as engine:
        with pytest.raises(Unavailable) as error:
            await answer(engine, "r0")
        message = error.value.message
        assert message.startswith("no vLLM server took the request, 2 configured")
        assert f"{overloaded.url} answered HTTP 503: The server is overloaded" in message
        assert f"{gone.url} is unreachable" in message
        assert not await engine.health()
        assert engine.endpoints.up_count() == 0


async def test_a_failure_after_text_streamed_is_an_error_not_a_second_answer(
    start: Start,
) -> None:
    dropping, alive = await start(drop_after=2), await start()
    async with engine_over(dropping, alive) as engine:
        received: list[str] = []

        async def consume() -> None:
            request = GenerateRequest("r0", "Describe.", [], len(WORDS))
            async with contextlib.aclosing(texts(engine, request)) as stream:
                async for text in stream:
                    received.append(text)

        with pytest.raises(Unavailable, match="dropped the stream"):
            await consume()
        assert received == list(WORDS[:2])
        assert alive.requests == 0
