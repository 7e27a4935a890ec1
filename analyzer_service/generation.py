"""The language model as the service uses it: its limits, and generation that cleans up after
itself. Summaries and chat both generate through ``Model.generate``."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncGenerator

from analyzer_service.engine import Delta, Engine, EngineMonitor, GenerateRequest
from analyzer_service.metrics import AnalyzerMetrics
from analyzer_service.settings import AnalyzerSettings


@dataclasses.dataclass(frozen=True)
class ModelLimits:
    """The engine's limits, the settings filling in what it does not know."""

    max_model_len: int
    tokens_per_image: int
    # The most frames one prompt shows.
    max_images: int
    # Whether prompts carry frames: not for a text-only model (the settings or the engine say).
    accepts_images: bool


class Model:
    def __init__(
        self,
        engine: Engine,
        *,
        settings: AnalyzerSettings,
        monitor: EngineMonitor,
        metrics: AnalyzerMetrics,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.monitor = monitor
        self.metrics = metrics

    @property
    def name(self) -> str:
        return self.engine.model

    def limits(self) -> ModelLimits:
        """As of now: an engine may learn its model's limits when it starts."""
        known, settings = self.engine.limits, self.settings
        return ModelLimits(
            max_model_len=known.max_model_len or settings.max_model_len,
            tokens_per_image=known.tokens_per_image or settings.tokens_per_image,
            max_images=known.max_images or settings.max_images,
            accepts_images=settings.model_accepts_images and known.accepts_images is not False,
        )

    async def generate(self, request: GenerateRequest, *, kind: str) -> AsyncGenerator[Delta, None]:
        """The engine's deltas for ``request``, timed in the metrics under ``kind``.

        The generation is engine work (refused while the engine is unhealthy, failed with
        UNAVAILABLE when it dies), and whatever ends it early (the caller closing this, a
        cancellation, an error) aborts the request, freeing the engine's slot for the next.
        """
        try:
            async with (
                self.monitor.watch(),
                contextlib.aclosing(self.metrics.deltas(self.engine, request, kind=kind)) as stream,
            ):
                async for delta in stream:
                    yield delta
        except BaseException:
            with contextlib.suppress(Exception):
                await self.engine.abort(request.request_id)
            raise
