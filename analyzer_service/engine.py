"""The seam where a language model plugs in.

The service needs three things from a model: stream text for a prompt with images, stop a
generation, and say whether it is up. vLLM (in process or over HTTP) is the planned engine; tests
use fakes.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from analyzer_service.settings import AnalyzerSettings
from vigil.errors import ModelNotConfigured

EXAMPLE_MODEL = "google/gemma-3-4b-it"
HOW_TO_CONFIGURE = (
    f"set VIGIL_ANALYZER_ENGINE=vllm and VIGIL_ANALYZER_MODEL={EXAMPLE_MODEL} "
    "(and install the engine with: pip install 'vigil[llm]')"
)


@dataclasses.dataclass(frozen=True)
class GenerateRequest:
    request_id: str
    prompt: str
    # JPEG files, in the order the prompt refers to them.
    images: Sequence[pathlib.Path]
    max_tokens: int


class Engine(Protocol):
    # The model's name as results report it, for example "google/gemma-3-4b-it".
    model: str

    def generate(self, request: GenerateRequest) -> AsyncIterator[str]:
        """Text deltas as they are generated. Closing the iterator early aborts the request."""
        ...

    async def abort(self, request_id: str) -> None: ...

    async def health(self) -> bool: ...


def not_configured() -> ModelNotConfigured:
    return ModelNotConfigured(
        f"No language model is configured; to configure one, {HOW_TO_CONFIGURE}."
    )


def engine_from_settings(settings: AnalyzerSettings) -> Engine | None:
    """The engine the settings ask for, or None when they ask for none."""
    if settings.engine == "none":
        return None
    # Refusing to start beats silently running without the model that was asked for.
    raise RuntimeError(
        f"VIGIL_ANALYZER_ENGINE={settings.engine} is not available in this version of Vigil; "
        "unset it to run without a language model"
    )
