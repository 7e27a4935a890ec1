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
import os
import pathlib
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


def ensure_entry_point(directory: pathlib.Path) -> bool:
    """Make ``register`` a ``vllm.general_plugins`` entry point for this process and its children.

    An installed ``vigil`` declares it; a source tree whose installed metadata predates that
    declaration gets a throwaway distribution in ``directory``, put on ``sys.path`` and
    ``PYTHONPATH`` (vLLM's spawned engine processes and subprocesses inherit both). Returns
    whether it had to.
    """
    plugins = importlib.metadata.entry_points(group="vllm.general_plugins")
    if any(ep.value == ENTRY_POINT for ep in plugins):
        return False
    dist = directory / "vigil_engines_plugin-0.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: vigil-engines-plugin\nVersion: 0\n"
    )
    (dist / "entry_points.txt").write_text(
        f"[vllm.general_plugins]\nvigil_gemma3_pil = {ENTRY_POINT}\n"
    )
    sys.path.insert(0, str(directory))
    paths = [str(directory), os.environ.get("PYTHONPATH", "")]
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
    importlib.invalidate_caches()
    return True
