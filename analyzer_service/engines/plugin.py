"""vLLM general plugin: lets vLLM's Gemma 3 load where torchvision is absent (CPU installs).

vLLM's Gemma 3 module imports transformers' ``Gemma3ImageProcessor`` only for type hints, but that
module imports torchvision at import time. ``Gemma3ImageProcessorPil`` is the same processor on
PIL. vLLM imports the model in several processes (a registry-inspection subprocess, the engine
core), all of which load the ``vllm.general_plugins`` entry points first, so the alias is
installed from here rather than by the caller.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
import types

_MODULE = "transformers.models.gemma3.image_processing_gemma3"


def register() -> None:
    """Entry point of the ``vllm.general_plugins`` group; idempotent and cheap when not needed."""
    if _MODULE in sys.modules:
        return
    try:
        importlib.import_module(_MODULE)
    # A missing torchvision raises ImportError; a CUDA build on a CPU host fails at import with
    # RuntimeError or OSError (missing operators or libraries).
    except (ImportError, RuntimeError, OSError):
        from transformers.models.gemma3 import image_processing_pil_gemma3 as pil

        alias = types.ModuleType(_MODULE, "Gemma3ImageProcessor backed by PIL (no torchvision).")
        alias.Gemma3ImageProcessor = pil.Gemma3ImageProcessorPil  # type: ignore[attr-defined]
        alias.Gemma3ImageProcessorKwargs = pil.Gemma3ImageProcessorKwargs  # type: ignore[attr-defined]
        sys.modules[_MODULE] = alias


ENTRY_POINT = "analyzer_service.engines.plugin:register"


def installed() -> bool:
    """Whether the installed ``vigil`` declares ``register`` as a vLLM general plugin."""
    plugins = importlib.metadata.entry_points(group="vllm.general_plugins")
    return any(ep.value == ENTRY_POINT for ep in plugins)
