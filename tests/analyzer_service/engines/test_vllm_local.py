"""The in-process vLLM engine on a tiny random Gemma 3: structure of prompts and streams.

The engine is the session's (``tests/llm.py``), on its own loop thread; ``local_engine`` forwards
to it, so the figures are the engine's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import pathlib

import pytest

from analyzer_service.engine import Engine, GenerateRequest
from analyzer_service.engines.vllm_local import LocalVllmEngine
from tests.llm import MAX_IMAGES, MAX_MODEL_LEN, SERVED_NAME, SharedEngine, texts
from vigil.core.errors import InvalidInput
from vigil.devtools import tiny_gemma3

# The first test's setup includes building the model and loading vLLM (minutes on a busy host).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def token_id(engine: SharedEngine, token: str) -> int:
    return int(engine.tokenizer().convert_tokens_to_ids(token))


async def wait_idle(engine: SharedEngine, within_s: float = 5.0) -> None:
    await engine.wait_idle(within_s)


async def test_is_an_engine_and_healthy(local_engine: SharedEngine) -> None:
    engine: Engine = local_engine
    assert engine.model == SERVED_NAME
    assert await engine.health()


async def test_prompt_has_one_bos_and_one_image_block_per_frame(
    local_engine: SharedEngine, frames: list[pathlib.Path]
) -> None:
    request = GenerateRequest("blocks", "Describe the frames.", frames[:3], 4)
    prepared = await local_engine.prepare(request)
    bos, boi = token_id(local_engine, tiny_gemma3.BOS), token_id(local_engine, tiny_gemma3.BOI)
    assert prepared.text.startswith(tiny_gemma3.BOS)
    assert prepared.text.count(tiny_gemma3.BOI) == 3
    assert prepared.token_ids.count(bos) == 1
    assert prepared.token_ids[0] == bos
    assert [image.size for image in prepared.images] == [(160, 120), (176, 128), (192, 136)]

    # What the engine actually ran: each placeholder expanded to a full block, nothing else.
    async with contextlib.aclosing(local_engine.outputs(request)) as stream:
        outputs = [output async for output in stream]
    ids = outputs[0].prompt_token_ids
    assert ids.count(bos) == 1
    assert ids.count(boi) == 3
    assert ids.count(token_id(local_engine, tiny_gemma3.EOI)) == 3
    assert (
        ids.count(token_id(local_engine, tiny_gemma3.IMAGE_TOKEN))
        == 3 * tiny_gemma3.TOKENS_PER_IMAGE
    )


async def test_text_only_prompt_has_no_image_block(local_engine: SharedEngine) -> None:
    request = GenerateRequest("text-only", "Say something.", [], 3)
    prepared = await local_engine.prepare(request)
    assert tiny_gemma3.BOI not in prepared.text
    assert prepared.images == []
    deltas = [delta async for delta in texts(local_engine, request)]
    assert deltas


@pytest.mark.parametrize("max_tokens", [1, 7, 24])
async def test_deltas_stream_and_add_up_to_the_text(
    local_engine: SharedEngine, frames: list[pathlib.Path], max_tokens: int
) -> None:
    request = GenerateRequest(f"deltas-{max_tokens}", "Describe.", frames[:2], max_tokens)
    pieces: list[str] = []
    token_ids: list[int] = []
    async with contextlib.aclosing(local_engine.outputs(request)) as stream:
        async for output in stream:
            (completion,) = output.outputs
            pieces.append(completion.text)
            token_ids.extend(completion.token_ids)
    # Deltas, not cumulative text: max_tokens exactly (<eos> is ignored), a chunk per token unless
    # the reader fell behind (vLLM then merges the deltas it holds into one).
    assert len(token_ids) == max_tokens
    assert 1 <= len(pieces) <= max_tokens
    tokenizer = local_engine.tokenizer()
    assert "".join(pieces) == tokenizer.decode(token_ids, skip_special_tokens=True)

    # The same seeded request through the Engine interface yields the same text as str deltas.
    same = GenerateRequest(f"deltas-{max_tokens}-again", "Describe.", frames[:2], max_tokens)
    deltas = [delta async for delta in texts(local_engine, same)]
    assert all(isinstance(delta, str) and delta for delta in deltas)
    assert "".join(deltas) == "".join(pieces)
    if max_tokens > 1:
        assert len(deltas) >= 2


async def test_max_tokens_is_capped_by_the_engine(local_engine: SharedEngine) -> None:
    request = GenerateRequest("capped", "Go on.", [], local_engine.max_tokens + 500)
    prepared = await local_engine.prepare(request)
    assert len(prepared.token_ids) < 100
    async with contextlib.aclosing(local_engine.outputs(request)) as stream:
        count = 0
        async for output in stream:
            count += len(output.outputs[0].token_ids)
    assert count == local_engine.max_tokens


async def test_too_many_images_is_a_clean_error(
    local_engine: SharedEngine, frames: list[pathlib.Path]
) -> None:
    request = GenerateRequest("too-many", "Describe.", frames[: MAX_IMAGES + 1], 4)
    with pytest.raises(InvalidInput, match=f"At most {MAX_IMAGES} image"):
        async for _ in texts(local_engine, request):
            pass
    await wait_idle(local_engine)
    # The engine is still usable afterwards.
    ok = GenerateRequest("after-too-many", "Describe.", frames[:MAX_IMAGES], 2)
    assert [delta async for delta in texts(local_engine, ok)]


async def test_prompt_longer_than_the_context_is_a_clean_error(
    local_engine: SharedEngine,
) -> None:
    request = GenerateRequest("too-long", "word " * 3000, [], 4)
    with pytest.raises(InvalidInput, match="refused the request"):
        async for _ in texts(local_engine, request):
            pass
    await wait_idle(local_engine)


@pytest.fixture
def long_engine(local_engine: SharedEngine) -> SharedEngine:
    """The session's engine allowing answers as long as the context."""
    return local_engine.capped_at(MAX_MODEL_LEN)


async def filling_the_context(engine: SharedEngine, request: GenerateRequest) -> GenerateRequest:
    """``request`` asking for every token that fits the context after its prompt: with <eos>
    ignored, only an abort can end it before that many, so a missed abort shows in the count."""
    room = await engine.full_length(dataclasses.replace(request, max_tokens=MAX_MODEL_LEN))
    assert room > 1500, "the prompt leaves too little room for a long answer"
    return dataclasses.replace(request, max_tokens=room)


async def test_closing_the_stream_aborts_the_request(
    long_engine: SharedEngine, frames: list[pathlib.Path]
) -> None:
    ask = GenerateRequest("closed", "Describe at length.", frames[:2], 1)
    request = await filling_the_context(long_engine, ask)
    before = await long_engine.settled_tokens()
    stream = texts(long_engine, request)
    received = [await anext(stream) for _ in range(3)]
    assert len(received) == 3
    assert await long_engine.unfinished_requests() == 1
    await stream.aclose()
    generated = await long_engine.settled_tokens() - before
    # How many tokens came before the abort landed depends on the machine's load; that it came
    # before the last is the abort.
    assert 3 <= generated < request.max_tokens


async def test_abort_ends_the_stream(long_engine: SharedEngine) -> None:
    request = await filling_the_context(long_engine, GenerateRequest("aborted", "Go on.", [], 1))
    before = await long_engine.settled_tokens()
    received: list[str] = []
    three = asyncio.Event()

    async def consume() -> None:
        async for delta in texts(long_engine, request):
            received.append(delta)
            if len(received) == 3:
                three.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(three.wait(), 30)
    await long_engine.abort("aborted")
    # The stream ends by itself (nobody closes it), and early.
    await asyncio.wait_for(task, 30)
    generated = await long_engine.settled_tokens() - before
    assert 3 <= len(received) <= generated < request.max_tokens


async def test_cancelling_the_consumer_aborts_the_request(long_engine: SharedEngine) -> None:
    request = await filling_the_context(long_engine, GenerateRequest("cancelled", "Go on.", [], 1))
    before = await long_engine.settled_tokens()
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in texts(long_engine, request):
            started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    generated = await long_engine.settled_tokens() - before
    assert 1 <= generated < request.max_tokens


async def test_not_started_engine_is_unhealthy(tiny_gemma: pathlib.Path) -> None:
    engine = LocalVllmEngine(str(tiny_gemma))
    assert not await engine.health()
    assert engine.model == str(tiny_gemma)
