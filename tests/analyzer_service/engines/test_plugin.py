"""The vLLM plugin that stands the PIL Gemma 3 image processor in for the torchvision one."""

from __future__ import annotations

import importlib.metadata
import importlib.util

from analyzer_service.engines import plugin


def test_register_makes_vllms_gemma3_importable() -> None:
    plugin.register()
    plugin.register()  # vLLM may load plugins more than once per process
    # The import as vLLM's Gemma 3 module writes it (through sys.modules, not the lazy package).
    from transformers.models.gemma3.image_processing_gemma3 import Gemma3ImageProcessor
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    if importlib.util.find_spec("torchvision") is None:
        pil: object = Gemma3ImageProcessorPil
        assert Gemma3ImageProcessor is pil
    from vllm.model_executor.models import gemma3_mm

    assert gemma3_mm.Gemma3ForConditionalGeneration.__name__ == "Gemma3ForConditionalGeneration"


def test_entry_point_is_discoverable(vllm_plugin: None) -> None:
    names = {ep.value for ep in importlib.metadata.entry_points(group="vllm.general_plugins")}
    assert plugin.ENTRY_POINT in names
