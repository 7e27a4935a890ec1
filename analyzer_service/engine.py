"""The seam where a language model plugs in.

The service needs three things from a model: stream text for a prompt with images, stop a
generation, and say whether it is up. Two engines implement it on vLLM
(``analyzer_service.engines``): ``AsyncLLM`` in this process, and a vLLM OpenAI-compatible server
over HTTP. ``EngineMonitor`` turns the engine's health into the service's: checked every second,
a failing engine makes the service NOT_SERVING, fails the inference in flight and refuses chat.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.util
import logging
import pathlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol

from analyzer_service.settings import AnalyzerSettings
from vigil.core.errors import ModelNotConfigured, Unavailable

log = logging.getLogger(__name__)

EXAMPLE_MODEL = "google/gemma-3-4b-it"
HOW_TO_CONFIGURE = (
    f"set VIGIL_ANALYZER_ENGINE=vllm and VIGIL_ANALYZER_MODEL={EXAMPLE_MODEL} "
    "(and install the engine with: pip install 'vigil[llm]')"
)


@dataclasses.dataclass(frozen=True)
class GenerateRequest:
    request_id: str
    # The text of the last user turn.
    prompt: str
    # JPEG files, in the order the prompt refers to them; they go with the first user turn.
    images: Sequence[pathlib.Path]
    max_tokens: int
    # Text put just before each image (its time in the video, "[01:23]"); empty: images only.
    labels: Sequence[str] = ()
    # Earlier turns of a conversation, oldest first, as (user text, model answer); the images go
    # with the first user turn, ``prompt`` follows the last answer.
    history: Sequence[tuple[str, str]] = ()


@dataclasses.dataclass(frozen=True)
class Delta:
    """A piece of generated text and the number of tokens it took (text may be empty)."""

    text: str
    tokens: int


class Engine(Protocol):
    # The model's name as results report it, for example "google/gemma-3-4b-it".
    model: str

    def generate(self, request: GenerateRequest) -> AsyncIterator[str]:
        """Text deltas as they are generated. Closing the iterator early aborts the request."""
        ...

    async def abort(self, request_id: str) -> None: ...

    async def health(self) -> bool: ...


async def stream_deltas(engine: Engine, request: GenerateRequest) -> AsyncGenerator[Delta, None]:
    """The engine's output with token counts: exact from an engine with ``deltas`` (both vLLM
    engines), else one token per text delta. Closing this closes the engine's stream (abort)."""
    deltas: Callable[[GenerateRequest], AsyncGenerator[Delta, None]] | None = getattr(
        engine, "deltas", None
    )
    if deltas is not None:
        async with contextlib.aclosing(deltas(request)) as stream:
            async for delta in stream:
                yield delta
        return
    texts = engine.generate(request)
    try:
        async for text in texts:
            yield Delta(text, 1)
    finally:
        close: Callable[[], Awaitable[None]] | None = getattr(texts, "aclose", None)
        if close is not None:
            await close()


def not_configured() -> ModelNotConfigured:
    return ModelNotConfigured(
        f"No language model is configured; to configure one, {HOW_TO_CONFIGURE}."
    )


def engine_from_settings(settings: AnalyzerSettings) -> Engine | None:
    """The engine the settings ask for (not started), or None when they ask for none."""
    if settings.engine == "none":
        return None
    if settings.engine == "vllm-http":
        from analyzer_service.engines.vllm_remote import RemoteVllmEngine

        key = settings.vllm_api_key.get_secret_value() if settings.vllm_api_key else None
        return RemoteVllmEngine(
            settings.vllm_url,
            settings.model,
            api_key=key,
            max_tokens=settings.max_tokens,
            temperature=settings.temperature,
            top_p=settings.top_p,
            connect_timeout_s=min(settings.request_timeout_s, 10.0),
            read_timeout_s=settings.request_timeout_s,
            health_timeout_s=settings.engine_health_timeout_s,
        )
    if importlib.util.find_spec("vllm") is None:
        # Refusing to start beats silently running without the model that was asked for.
        raise RuntimeError(
            "VIGIL_ANALYZER_ENGINE=vllm needs vLLM: pip install 'vigil[llm]' "
            "(or unset it to run without a language model)"
        )
    from analyzer_service.engines.vllm_local import LocalVllmEngine

    return LocalVllmEngine(
        settings.model,
        served_name=settings.served_model_name or None,
        dtype=settings.dtype,
        max_model_len=settings.max_model_len,
        max_images=settings.max_images,
        max_tokens=max(settings.max_tokens, settings.chat_max_tokens),
        temperature=settings.temperature,
        top_p=settings.top_p,
    )


async def start_engine(engine: Engine) -> None:
    start: Callable[[], Awaitable[None]] | None = getattr(engine, "start", None)
    if start is not None:
        await start()


async def close_engine(engine: Engine) -> None:
    """Release an engine the service made: ``shutdown`` (in process) or ``aclose`` (HTTP)."""
    for name in ("shutdown", "aclose"):
        close: Callable[[], Awaitable[None]] | None = getattr(engine, name, None)
        if close is not None:
            await close()
            return


class EngineMonitor:
    """Polls ``engine.health()``; while it fails, inference and chat fail fast with UNAVAILABLE.

    Work that uses the engine runs inside ``watch()``: when the engine is found unhealthy, the
    task is cancelled and the cancellation turned into ``Unavailable`` there, so a generation
    whose engine died (one that would never produce another token) ends within one interval.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        interval_s: float,
        timeout_s: float,
        on_change: Callable[[bool], Awaitable[None]] | None = None,
    ) -> None:
        self.engine = engine
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.on_change = on_change
        self.healthy = True
        self._watched: set[asyncio.Task[Any]] = set()
        self._failed: set[asyncio.Task[Any]] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="engine-monitor")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def check(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self.engine.health(), self.timeout_s))
        except Exception:
            return False

    async def _run(self) -> None:
        while True:
            await self._set(await self.check())
            await asyncio.sleep(self.interval_s)

    async def _set(self, healthy: bool) -> None:
        if healthy == self.healthy:
            return
        self.healthy = healthy
        if healthy:
            log.warning("the language model %s is healthy again", self.engine.model)
        else:
            log.error("the language model %s is not healthy", self.engine.model)
            for task in self._watched:
                if not task.done():
                    self._failed.add(task)
                    task.cancel()
        if self.on_change is not None:
            await self.on_change(healthy)

    def unavailable(self) -> Unavailable:
        return Unavailable(f"the language model {self.engine.model} is not available")

    def ensure_healthy(self) -> None:
        if not self.healthy:
            raise self.unavailable()

    @contextlib.asynccontextmanager
    async def watch(self) -> AsyncIterator[None]:
        """Run the block as engine work: refused while unhealthy, failed if the engine dies."""
        self.ensure_healthy()
        task = asyncio.current_task()
        assert task is not None
        self._watched.add(task)
        try:
            yield
        except asyncio.CancelledError:
            if task not in self._failed:
                raise
            task.uncancel()
            raise self.unavailable() from None
        finally:
            self._watched.discard(task)
            self._failed.discard(task)
