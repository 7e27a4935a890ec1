"""One real vLLM engine for the whole test session, usable from any event loop.

vLLM's ``AsyncLLM`` belongs to the loop that started it, but tests run on many loops: pytest's
per-test loops, the background loop of the SDK tests, the e2e test's. So the engine lives on a
loop of its own in a daemon thread (started once: 15-120 s on two cores), and ``SharedEngine``
forwards calls and streams to it from whichever loop calls; it is an ``Engine`` for the analyzer.
Cancelling or closing a stream on the calling side cancels it on the engine's loop, which aborts
the request in vLLM, exactly as with the engine used directly.

Abort tests count the tokens the engine really generated (``TokenCounter``, fed by vLLM's own
per-step stats), not what a reader saw: a request that goes on after its reader left still counts.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import copy
import dataclasses
import pathlib
import socket
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

from analyzer_service.engine import Delta, Engine, EngineLimits, GenerateRequest, Lifecycle
from analyzer_service.engines.vllm_local import LocalVllmEngine, Prepared

T = TypeVar("T")

MAX_IMAGES = 4
SERVED_NAME = "tiny-gemma3"
API_KEY = "test-key-do-not-leak"
MAX_MODEL_LEN = 2048
# Caps every request; long enough that aborts land mid-generation, short enough to run in full.
ENGINE_MAX_TOKENS = 300
# Seconds the engine may take to load; 190 s were seen with other test suites running.
LOAD_S = 600.0

_DONE = object()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TokenCounter:
    """Tokens the engine generated, from the stats vLLM records at every engine step (those its
    ``vllm:generation_tokens`` metric counts): every token of every request it ran, whether or not
    anyone read it. Requests stop counting once aborted, which is what abort tests rely on."""

    def __init__(self) -> None:
        self.total = 0

    def logger(self, vllm_config: Any, engine_index: int) -> _CountingLogger:
        """A vLLM stat logger factory (``StatLoggerFactory``) feeding this count."""
        return _CountingLogger(self)


class _CountingLogger:
    """The part of vLLM's ``StatLoggerBase`` its logger manager calls; runs on the engine's loop."""

    def __init__(self, counter: TokenCounter) -> None:
        self.counter = counter

    def record(
        self,
        scheduler_stats: Any,
        iteration_stats: Any,
        mm_cache_stats: Any = None,
        engine_idx: int = 0,
    ) -> None:
        if iteration_stats is not None:
            self.counter.total += int(iteration_stats.num_generation_tokens)

    def log_engine_initialized(self) -> None:
        pass

    def log(self) -> None:
        pass

    def record_sleep_state(self, is_awake: int, level: int) -> None:
        pass


def make_engine(model: pathlib.Path, tokens: TokenCounter) -> LocalVllmEngine:
    return LocalVllmEngine(
        str(model),
        served_name=SERVED_NAME,
        dtype="bfloat16",
        max_model_len=MAX_MODEL_LEN,
        max_images=MAX_IMAGES,
        max_tokens=ENGINE_MAX_TOKENS,
        temperature=1.0,
        seed=0,
        engine_args={"enforce_eager": True},
        # A random model would stop at a random <eos>; ignoring it makes lengths exact.
        sampling_args={"ignore_eos": True},
        stat_loggers=[tokens.logger],
    )


class SharedEngine(Lifecycle):
    """``LocalVllmEngine`` on its own loop thread, callable from any loop."""

    def __init__(self, engine: LocalVllmEngine, tokens: TokenCounter) -> None:
        self.inner = engine
        self.tokens = tokens
        self.model = engine.model
        self.max_model_len = engine.max_model_len
        self.max_images = engine.max_images
        self.max_tokens = engine.max_tokens
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="vllm-engine-loop", daemon=True
        )
        self._thread.start()

    # Lifecycle, from synchronous code (session fixtures).

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def load(self, timeout: float = LOAD_S) -> None:
        """Start the engine, at the start of the session (``start`` is the Lifecycle's, a
        no-op, as is ``close``)."""
        self.run(self.inner.start(), timeout)

    def capped_at(self, max_tokens: int) -> SharedEngine:
        """This engine (the same AsyncLLM, loop and token count) with answers of up to
        ``max_tokens`` tokens instead of ``ENGINE_MAX_TOKENS``: for tests that need long ones."""
        view = copy.copy(self)
        view.inner = copy.copy(self.inner)
        view.inner.max_tokens = view.max_tokens = max_tokens
        return view

    def stop(self) -> None:
        """Close the engine and its loop, at the end of the session."""
        with contextlib.suppress(Exception):
            self.run(self.inner.close(), 120)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    # What the analyzer and tests call, from any loop.

    async def call(self, fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Await ``fn()`` on the engine's loop."""
        future = asyncio.run_coroutine_threadsafe(fn(), self.loop)
        return await asyncio.wrap_future(future)

    async def stream(self, open_stream: Callable[[], AsyncIterator[T]]) -> AsyncGenerator[T, None]:
        """Items of ``open_stream()`` iterated on the engine's loop; closing this cancels it."""
        caller = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()

        def put(item: Any) -> None:
            caller.call_soon_threadsafe(queue.put_nowait, item)

        async def pump() -> None:
            try:
                async with contextlib.aclosing(open_stream()) as items:  # type: ignore[type-var]
                    async for item in items:
                        put(item)
            except BaseException as exc:
                put(exc)
                raise
            put(_DONE)

        future: concurrent.futures.Future[None] = asyncio.run_coroutine_threadsafe(
            pump(), self.loop
        )
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    if isinstance(item, asyncio.CancelledError):
                        raise RuntimeError("the engine's stream was cancelled")
                    raise item
                yield item
        finally:
            if not future.done():
                # Cancels the pump on the engine's loop: its stream closes, vLLM aborts.
                future.cancel()
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(asyncio.wrap_future(future), 10)

    async def deltas(self, request: GenerateRequest) -> AsyncGenerator[Delta, None]:
        async with contextlib.aclosing(self.stream(lambda: self.inner.deltas(request))) as s:
            async for delta in s:
                yield delta

    async def outputs(self, request: GenerateRequest) -> AsyncGenerator[Any, None]:
        async with contextlib.aclosing(self.stream(lambda: self.inner.outputs(request))) as s:
            async for output in s:
                yield output

    async def prepare(self, request: GenerateRequest) -> Prepared:
        return await self.call(lambda: self.inner.prepare(request))

    async def abort(self, request_id: str) -> None:
        await self.call(lambda: self.inner.abort(request_id))

    async def health(self) -> bool:
        return await self.call(self.inner.health)

    async def unfinished_requests(self) -> int:
        async def count() -> int:
            return self.inner.unfinished_requests()

        return await self.call(count)

    async def wait_idle(self, within_s: float = 5.0) -> None:
        """Return once the engine runs no request; fail after ``within_s`` seconds."""
        deadline = asyncio.get_running_loop().time() + within_s
        while await self.unfinished_requests():
            assert asyncio.get_running_loop().time() < deadline, "the engine is still generating"
            await asyncio.sleep(0.02)

    async def settled_tokens(self, within_s: float = 60.0) -> int:
        """Tokens generated so far, read once the engine runs no request (vLLM records a step's
        stats in the same pass that finishes its requests, so the count then stands still)."""
        await self.wait_idle(within_s)
        return self.tokens.total

    async def full_length(self, request: GenerateRequest) -> int:
        """Tokens ``request`` generates when nothing stops it (<eos> is ignored): its max_tokens
        within the engine's cap, and no more than fit the context after its prompt (vLLM ends a
        request there). Measured by running its prompt for one token."""
        probe = dataclasses.replace(request, request_id=f"{request.request_id}-probe", max_tokens=1)
        async with contextlib.aclosing(self.outputs(probe)) as stream:
            prompt = len((await anext(stream)).prompt_token_ids)
        return min(request.max_tokens, self.max_tokens, self.max_model_len - prompt)

    @property
    def limits(self) -> EngineLimits:
        return self.inner.limits

    def tokenizer(self) -> Any:
        llm = self.inner._llm
        assert llm is not None, "the engine is not started"
        return llm.get_tokenizer()


@dataclasses.dataclass
class ServerProcess:
    url: str
    process: Any  # subprocess.Popen[bytes]
    log: pathlib.Path


def tail(path: pathlib.Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


async def texts(engine: Engine, request: GenerateRequest) -> AsyncGenerator[str, None]:
    """The answer's text pieces, as a caller shows them, from the engine's deltas; closing this
    closes the engine's stream (and so aborts the request)."""
    async with contextlib.aclosing(engine.deltas(request)) as stream:
        async for delta in stream:
            if delta.text:
                yield delta.text
