"""The seam where a language model plugs in: the ``Engine`` protocol and the registry of engines.

``Engine`` declares everything the service uses of a model, as vLLM's ``EngineClient`` does for
its front ends: start and close (an async context manager), streamed deltas, abort, a health check
and one ``limits`` value. Engines register a class under the name ``VIGIL_ANALYZER_ENGINE`` gives
(``@register("vllm")``); ``analyzer_service.engines.catalog`` imports the built-in ones, and its
``create`` builds the one the settings name. This module imports no engine, so engines depend on
it and never the other way round.

``EngineMonitor`` turns the engine's health into the service's: checked every second, a failing
engine makes the service NOT_SERVING, fails the inference in flight and refuses chat.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import pathlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

from analyzer_service.settings import AnalyzerSettings
from vigil.core.errors import ModelNotConfigured, Unavailable

log = logging.getLogger(__name__)

EXAMPLE_MODEL = "google/gemma-3-4b-it"
HOW_TO_CONFIGURE = (
    f"set VIGIL_ANALYZER_ENGINE=vllm and VIGIL_ANALYZER_MODEL={EXAMPLE_MODEL} "
    "(and install the engine with: pip install 'vigil[llm]')"
)
# The engine setting that means "no language model": jobs still run, without a summary.
NO_ENGINE = "none"
# Late health answers in a row that fail an engine (see EngineMonitor.check).
SLOW_CHECKS = 3


# Constrained answers: the answer must match one of these forms.


@dataclasses.dataclass(frozen=True)
class Choice:
    """The answer is exactly one of ``options``."""

    options: Sequence[str]


@dataclasses.dataclass(frozen=True)
class Regex:
    """The answer matches ``pattern`` (a regular expression, whole answer)."""

    pattern: str


@dataclasses.dataclass(frozen=True)
class JsonSchema:
    """The answer is JSON valid against ``schema``."""

    schema: Mapping[str, Any]


Constraint = Choice | Regex | JsonSchema


class Priority(enum.IntEnum):
    """Who goes first when requests wait for the model: an alert someone may be woken for, then a
    person waiting for a chat answer, then watch rules, then uploaded analyses."""

    VERIFICATION = 0
    CHAT = 1
    WATCH_RULE = 2
    ANALYSIS = 3


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
    # The form the answer must take (None: free text). An engine that cannot honour it refuses
    # the request with InvalidInput rather than answer unconstrained.
    constraint: Constraint | None = None
    # Scheduling priority, vLLM's convention: lower runs sooner when the engine schedules by
    # priority (vLLM's ``scheduling_policy="priority"``); 0, the default, changes nothing. The
    # service's own scheduler orders requests by ``Priority`` before they reach the engine.
    priority: int = 0
    # Whose turn this request counts against within its priority (a source, a rule, a job):
    # requests of one priority take turns between keys. Empty: the request id.
    fair_key: str = ""
    # Per-request sampling (None: the engine's default); a seed makes an answer repeatable.
    temperature: float | None = None
    seed: int | None = None


@dataclasses.dataclass(frozen=True)
class Delta:
    """A piece of generated text and the number of tokens it took (text may be empty)."""

    text: str
    tokens: int


@dataclasses.dataclass(frozen=True)
class EngineLimits:
    """What an engine knows of its model's limits; None where it does not know, and then the
    service's settings (``max_model_len``, ``tokens_per_image``, ``max_images``,
    ``model_accepts_images``) apply."""

    # Tokens of prompt and answer together.
    max_model_len: int | None = None
    # Prompt tokens one labelled frame takes.
    tokens_per_image: int | None = None
    # The most images one prompt may carry.
    max_images: int | None = None
    # Whether the model reads images; False makes prompts carry the timeline instead of frames.
    accepts_images: bool | None = None


class Engine(Protocol):
    """A language model as the service uses it.

    Used as ``async with engine:`` (``__aenter__`` loads or connects, ``__aexit__`` releases) by
    whoever made it; the service enters the engines it makes from its settings, and leaves one
    passed to it to its caller.
    """

    @property
    def model(self) -> str:
        """The model's name as results report it, for example "google/gemma-3-4b-it"."""
        ...

    @property
    def limits(self) -> EngineLimits:
        """The model's limits as known now (an engine may learn them when it starts)."""
        ...

    def deltas(self, request: GenerateRequest) -> AsyncGenerator[Delta, None]:
        """The answer as it is generated, with the tokens each piece took. Closing the iterator
        early aborts the request."""
        ...

    async def abort(self, request_id: str) -> None:
        """Stop generating for ``request_id``; nothing happens for one that is not running."""
        ...

    async def health(self) -> bool:
        """Whether the engine can generate now; never raises."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class Lifecycle:
    """``async with`` for an engine: ``start`` on entry, ``close`` on exit. Both do nothing
    unless overridden, which suits an engine whose life belongs to someone else (a wrapper
    around another engine, a session-wide engine in tests)."""

    async def start(self) -> None:
        """Load the model or connect to it."""

    async def close(self) -> None:
        """Release what ``start`` took."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


# The registry: engine names (``VIGIL_ANALYZER_ENGINE``) to engine classes.


class EngineClass(Protocol):
    """An engine class as registered: it builds its engine (not started) from the settings."""

    def from_settings(self, settings: AnalyzerSettings) -> Engine: ...


C = TypeVar("C", bound=EngineClass)
_REGISTRY: dict[str, EngineClass] = {}


def register(name: str) -> Callable[[C], C]:
    """Class decorator: ``settings.engine == name`` builds this class's engine."""

    def add(cls: C) -> C:
        if name == NO_ENGINE or _REGISTRY.get(name, cls) is not cls:
            raise ValueError(f"the engine name {name!r} is taken")
        _REGISTRY[name] = cls
        return cls

    return add


def names() -> list[str]:
    """The registered engine names."""
    return sorted(_REGISTRY)


def create(settings: AnalyzerSettings) -> Engine | None:
    """The engine ``settings.engine`` names, not started; None for "none" (no model)."""
    if settings.engine == NO_ENGINE:
        return None
    try:
        cls = _REGISTRY[settings.engine]
    except KeyError:
        raise ValueError(
            f"unknown analyzer engine {settings.engine!r}; choose one of {[NO_ENGINE, *names()]}"
        ) from None
    return cls.from_settings(settings)


def not_configured() -> ModelNotConfigured:
    return ModelNotConfigured(
        f"No language model is configured; to configure one, {HOW_TO_CONFIGURE}."
    )


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
        self._late = 0

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
        """One health check. An engine that answers "unhealthy" or cannot be reached fails at
        once; one that answers late fails only after ``SLOW_CHECKS`` late answers in a row: a
        busy CPU server is slow to answer its health while it generates, and failing it on one
        late answer would cancel every generation running on a working engine."""
        try:
            healthy = bool(await asyncio.wait_for(self.engine.health(), self.timeout_s))
        except TimeoutError:
            self._late += 1
            return self.healthy and self._late < SLOW_CHECKS
        except Exception:
            healthy = False
        self._late = 0
        return healthy

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
