"""What the in-process vLLM engine costs on a tiny random Gemma 3: load, first token, decoding.

Timed inside the analyzer (``analyzer_service.benchmarks.engine``, run as a child process): engine
load, time to first token (TTFT) for a text-only prompt and for one with 8 frames, and decoding
speed. The headline ``ratio`` is TTFT with 8 frames divided by text-only TTFT.
"""

from __future__ import annotations

from typing import Any

from vigil.bench.child import run_module


def run(options: dict[str, Any]) -> dict[str, Any]:
    return run_module("analyzer_service.benchmarks.engine", {"repeat": options.get("repeat", 5)})
