"""The HTTP engine against vLLM's own OpenAI server (a subprocess on the tiny Gemma 3)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import pathlib
import re

import httpx
import pytest

from analyzer_service.engine import Engine, GenerateRequest
from analyzer_service.engines.vllm_remote import RemoteVllmEngine
from tests.analyzer_service.engines.openai_standin import OpenAIStandIn
from tests.llm import API_KEY, MAX_IMAGES, SERVED_NAME, free_port, texts
from vigil.core.errors import FailedPrecondition, InvalidInput, Unavailable
from vigil.devtools import tiny_gemma3

# The first test's setup includes building the model and loading vLLM (minutes on a busy host).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


async def _metric(base_url: str, name: str) -> float:
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"{base_url}/metrics")).text
    values = re.findall(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", metrics, re.MULTILINE)
    assert values, f"the server exports no {name}"
    return sum(float(value) for value in values)


async def running_requests(base_url: str) -> float:
    return await _metric(base_url, "vllm:num_requests_running")


async def generated_tokens(base_url: str) -> float:
    return await _metric(base_url, "vllm:generation_tokens_total")


async def settled_generated_tokens(base_url: str, before: float) -> float:
    """Tokens generated since the count was ``before``, once the count stands still."""
    # The counter moves with every engine step; wait until it stands still for a second.
    deadline = asyncio.get_running_loop().time() + 60
    settled, last = 0, before
    while settled < 10:
        assert asyncio.get_running_loop().time() < deadline, "the server kept generating"
        await asyncio.sleep(0.1)
        now = await generated_tokens(base_url)
        settled, last = (settled + 1, last) if now == last else (0, now)
    return last - before


async def wait_idle(base_url: str, within_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while await running_requests(base_url):
        assert asyncio.get_running_loop().time() < deadline, "the server is still generating"
        await asyncio.sleep(0.1)


async def test_is_an_engine_and_healthy(remote_engine: RemoteVllmEngine) -> None:
    engine: Engine = remote_engine
    assert engine.model == SERVED_NAME
    assert await engine.health()


async def test_streams_deltas_for_two_frames(
    remote_engine: RemoteVllmEngine, frames: list[pathlib.Path]
) -> None:
    request = GenerateRequest("remote-two", "Describe the frames.", frames[:2], 12)
    pieces: list[str] = []
    usage = None
    async with contextlib.aclosing(remote_engine.chunks(request)) as stream:
        async for chunk in stream:
            usage = chunk.get("usage") or usage
            pieces.extend(c["delta"].get("content") or "" for c in chunk["choices"])
    assert usage is not None
    assert usage["completion_tokens"] == 12
    # Two image blocks made it into the prompt the server ran.
    assert usage["prompt_tokens"] > 2 * tiny_gemma3.TOKENS_PER_IMAGE
    assert sum(1 for text in pieces if text) >= 2

    deltas = [delta async for delta in texts(remote_engine, request)]
    assert len(deltas) >= 2
    assert all(isinstance(delta, str) and delta for delta in deltas)


async def test_closing_the_stream_aborts_on_the_server(
    vllm_server: str, frames: list[pathlib.Path]
) -> None:
    # 1900 tokens with <eos> ignored (the prompt and they fit the 2048-token context): seconds of
    # work that only an abort can end early, so a missed abort shows in the token count.
    engine = RemoteVllmEngine(
        vllm_server, SERVED_NAME, api_key=API_KEY, max_tokens=1900, extra_body={"ignore_eos": True}
    )
    request = GenerateRequest("remote-closed", "Describe at length.", frames[:2], 1900)
    async with engine:
        await _close_mid_stream(engine, vllm_server, request)


# On a busy machine the tiny model can finish a whole answer before this process gets to stop it,
# which says nothing about the abort; a missed abort shows in every try.
TRIES = 3


async def _close_mid_stream(
    remote_engine: RemoteVllmEngine, vllm_server: str, request: GenerateRequest
) -> None:
    counts = []
    for attempt in range(TRIES):
        await wait_idle(vllm_server)
        before = await generated_tokens(vllm_server)
        tried = dataclasses.replace(request, request_id=f"{request.request_id}-{attempt}")
        stream = texts(remote_engine, tried)
        try:
            for _ in range(3):
                await anext(stream)
        finally:
            await stream.aclose()
        counts.append(await settled_generated_tokens(vllm_server, before))
        # Had the server not noticed the closed connection it would have run all the tokens
        # asked for; how many it ran before noticing depends on how busy the machine is.
        if 3 <= counts[-1] < request.max_tokens:
            return
    pytest.fail(f"the server ran every token asked for in each try: {counts}")


async def _consume(
    engine: RemoteVllmEngine, request: GenerateRequest, received: list[str], three: asyncio.Event
) -> None:
    async for delta in texts(engine, request):
        received.append(delta)
        if len(received) == 3:
            three.set()


async def test_abort_ends_the_stream(vllm_server: str) -> None:
    # As above: 2000 tokens with <eos> ignored fill the context after the short prompt, so only
    # the abort can end the answer early.
    engine = RemoteVllmEngine(
        vllm_server, SERVED_NAME, api_key=API_KEY, max_tokens=2000, extra_body={"ignore_eos": True}
    )
    outcomes = []
    async with engine:
        for attempt in range(TRIES):
            request = GenerateRequest(f"remote-aborted-{attempt}", "Go on.", [], 2000)
            received: list[str] = []
            three = asyncio.Event()
            await wait_idle(vllm_server)
            before = await generated_tokens(vllm_server)
            task = asyncio.create_task(_consume(engine, request, received, three))
            await asyncio.wait_for(three.wait(), 30)
            await engine.abort(request.request_id)
            # The stream ends by itself (nobody closes it).
            await asyncio.wait_for(task, 30)
            generated = await settled_generated_tokens(vllm_server, before)
            assert 3 <= len(received) <= generated
            outcomes.append(generated)
            if generated < request.max_tokens:
                return
    pytest.fail(f"the server ran every token asked for in each try: {outcomes}")


async def test_too_many_images_is_a_clean_error(
    remote_engine: RemoteVllmEngine, frames: list[pathlib.Path]
) -> None:
    request = GenerateRequest("remote-too-many", "Describe.", frames[: MAX_IMAGES + 1], 4)
    with pytest.raises(InvalidInput, match="HTTP 400") as error:
        async for _ in texts(remote_engine, request):
            pass
    assert f"At most {MAX_IMAGES} image" in error.value.message


async def test_wrong_key_is_reported_without_leaking_it(vllm_server: str) -> None:
    secret = "sk-wrong-key-1234567890"
    async with RemoteVllmEngine(vllm_server, SERVED_NAME, api_key=secret) as engine:
        assert await engine.health()  # /health needs no key
        with pytest.raises(FailedPrecondition, match="HTTP 401") as error:
            async for _ in texts(engine, GenerateRequest("remote-key", "Hi.", [], 2)):
                pass
    assert secret not in str(error.value)
    assert API_KEY not in str(error.value)
    assert secret not in repr(engine)


async def test_unreachable_server_is_unavailable_and_unhealthy() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with RemoteVllmEngine(
        url, SERVED_NAME, api_key="sk-secret", connect_timeout_s=1
    ) as engine:
        assert not await engine.health()
        with pytest.raises(Unavailable, match="unreachable") as error:
            async for _ in texts(engine, GenerateRequest("remote-down", "Hi.", [], 2)):
                pass
    assert "sk-secret" not in str(error.value)


async def test_fails_over_onto_the_real_server(vllm_server: str) -> None:
    """A server that is gone and one answering 503 stand before vLLM's own: every request is
    answered by vLLM, and health counts one server up of three."""
    overloaded = OpenAIStandIn(status=503)
    await overloaded.start()
    gone = f"http://127.0.0.1:{free_port()}"
    urls = [gone, overloaded.url, vllm_server]
    try:
        async with RemoteVllmEngine(
            urls, SERVED_NAME, api_key=API_KEY, connect_timeout_s=2, max_tokens=4
        ) as engine:
            for n in range(2):
                request = GenerateRequest(f"remote-failover-{n}", "Hi.", [], 4)
                assert "".join([text async for text in texts(engine, request)])
            assert overloaded.request_ids[0] == "remote-failover-0"
            assert await engine.health()
            assert engine.endpoints.up_count() == 1
    finally:
        await overloaded.stop()
