"""Time to first token of a chat answer through the bridge, against the engine called directly.

Measured by ``analyzer_service.benchmarks.chat``, run as a child process: the in-process vLLM
engine on a tiny random Gemma 3 under the analyzer, with the bridge in front as a process of its
own. The headline ``ratio`` is bridge TTFT / direct TTFT; the difference is what HTTP, the
bridge, gRPC and the analyzer add.
"""

from __future__ import annotations

from typing import Any

from vigil.bench.child import run_module


def run(options: dict[str, Any]) -> dict[str, Any]:
    return run_module("analyzer_service.benchmarks.chat", {"repeat": options.get("repeat", 5)})
