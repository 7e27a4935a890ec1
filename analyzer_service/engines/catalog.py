"""The built-in engines, registered by importing their modules (none imports vLLM until it
starts), as ``detector_service.backends`` does for detector backends; ``create`` builds the one
the settings name."""

from analyzer_service.engine import create, names, register
from analyzer_service.engines import vllm_local, vllm_remote

__all__ = ["create", "names", "register", "vllm_local", "vllm_remote"]
