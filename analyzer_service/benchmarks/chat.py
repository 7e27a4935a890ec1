"""Time to first token of a chat answer through the bridge, against the engine called directly.

The in-process vLLM engine on a tiny random Gemma 3 (built on the spot, as in the ``engine``
benchmark) and the analyzer service over it run on one event loop in this process (vLLM's
``AsyncLLM`` must stay on the loop that started it); the bridge is a process of its own, started
by ``vigil.launcher`` as ``vigil run`` starts it. A small video is analysed
once; then each run asks a new question over the bridge's HTTP chat endpoint (NDJSON) and times
the first answer piece, and sends the very request the analyzer gave the engine (same prompt, same
frames; caches off) to the engine directly. The headline ``ratio`` is bridge TTFT / direct TTFT;
the difference is what HTTP, the bridge, gRPC and the analyzer add.

``python -m analyzer_service.benchmarks.chat '{"repeat": 5}'`` prints the figures as JSON;
``vigil bench chat`` runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
import os
import pathlib
import statistics
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from analyzer_service.benchmarks.engine import repeats, run_on_tiny_model, tiny_engine, ttft_ms
from analyzer_service.engine import Lifecycle

QUESTION = "What happens in the video, and when?"


class Recording(Lifecycle):  # the benchmark starts and stops the engine itself
    """The engine as the analyzer sees it; remembers the last request it was given."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.model: str = inner.model
        # Only the context length is passed on: the analyzer sizes prompts as it always has here.
        self.limits: Any = dataclasses.replace(
            inner.limits, tokens_per_image=None, max_images=None, accepts_images=None
        )
        self.last: Any = None

    def deltas(self, request: Any) -> AsyncGenerator[Any, None]:
        self.last = request
        stream: AsyncGenerator[Any, None] = self.inner.deltas(request)
        return stream

    async def abort(self, request_id: str) -> None:
        await self.inner.abort(request_id)

    async def health(self) -> bool:
        healthy: bool = await self.inner.health()
        return healthy


async def bridge_ttft_ms(http: Any, url: str, question: str) -> float:
    """Milliseconds to the first NDJSON piece with text (or the final one); raises on an error."""
    import orjson

    start = time.perf_counter()
    async with http.stream("POST", url, json={"question": question, "max_tokens": 8}) as reply:
        if reply.status_code != 200:
            body = (await reply.aread()).decode(errors="replace")
            raise RuntimeError(f"bridge chat answered {reply.status_code}: {body[:300]}")
        async for line in reply.aiter_lines():
            if not line:
                continue
            piece = orjson.loads(line)
            if "error" in piece:
                raise RuntimeError(f"bridge chat failed: {piece['error']}")
            if piece.get("delta") or piece.get("done"):
                return (time.perf_counter() - start) * 1000
    raise RuntimeError("the chat answer ended without a piece")


async def _analyse(address: str, video: bytes) -> str:
    from vigil.sdk import AsyncAnalyzerClient

    async with AsyncAnalyzerClient(address) as analyzer:
        uploaded = await analyzer.upload_video(
            io.BytesIO(video), name="bench.mp4", size=len(video), start_analysis=True
        )
        assert uploaded.job is not None
        async for event in analyzer.events(uploaded.job.id):
            if event.kind == "error":
                raise RuntimeError(f"the analysis failed: {event.message}")
        return uploaded.job.id


@contextlib.asynccontextmanager
async def _bridge(analyzer: str) -> AsyncIterator[str]:
    """The bridge in front of ``analyzer``, as its own process; its base URL. Started and stopped
    in a thread: the analyzer answering its calls runs on this loop."""
    from vigil import launcher

    env = {
        **os.environ,
        "VIGIL_BRIDGE_PORT": str(launcher.free_port()),
        "VIGIL_BRIDGE_ANALYZER_ADDRESS": analyzer,
        "VIGIL_BRIDGE_LOG_LEVEL": "WARNING",
    }
    with contextlib.ExitStack() as stack:
        await asyncio.to_thread(stack.enter_context, launcher.started(["bridge"], env))
        try:
            yield launcher.address("bridge", env)
        finally:
            await asyncio.to_thread(stack.close)


async def measure(model: pathlib.Path, work: pathlib.Path, runs: int) -> dict[str, Any]:
    inner = tiny_engine(model, max_images=8, max_tokens=16)
    await inner.start()
    try:
        result = await measure_started(inner, work, runs, max_frames=8)
    finally:
        await inner.close()
    return {**result, "engine_load_s": round(inner.load_s or 0.0, 1)}


async def measure_started(
    inner: Any, work: pathlib.Path, runs: int, max_frames: int
) -> dict[str, Any]:
    """The figures on an engine already loaded that takes ``max_frames`` images a prompt."""
    import httpx

    from analyzer_service.engine import GenerateRequest
    from analyzer_service.server import serve
    from analyzer_service.settings import AnalyzerSettings
    from vigil.loadgen import media

    engine = Recording(inner)
    analyzer = None
    try:
        settings = AnalyzerSettings(
            port=0,
            data_dir=work / "analyzer",
            media_workers=1,
            detection_pass=False,
            max_tokens=16,
            max_frames_limit=max_frames,
        )
        analyzer = await serve(settings, engine=engine)
        async with _bridge(f"127.0.0.1:{analyzer.port}") as base:
            video = media.small_video(work / "clip.mp4")
            job_id = await _analyse(f"127.0.0.1:{analyzer.port}", video)
            url = f"{base}/api/analyses/{job_id}/chat"
            bridge_ms: list[float] = []
            direct_ms: list[float] = []
            error = ""
            async with httpx.AsyncClient(timeout=120) as http:
                for run in range(runs + 1):  # the first of each is a warm-up
                    question = f"Run {run}. {QUESTION}"
                    try:
                        ms = await bridge_ttft_ms(http, url, question)
                        if run:
                            bridge_ms.append(ms)
                    except RuntimeError as e:
                        error = str(e)
                    request = engine.last or GenerateRequest(f"q{run}", question, [], 8)
                    request = dataclasses.replace(request, request_id=f"direct-{run}", max_tokens=8)
                    ms = await ttft_ms(inner, request)
                    if run:
                        direct_ms.append(ms)
    finally:
        if analyzer is not None:
            await analyzer.stop(0)
    direct = statistics.median(direct_ms)
    out: dict[str, Any] = {
        "name": "chat",
        "direct_ttft_ms": round(direct, 1),
        "frames_in_prompt": len(engine.last.images) if engine.last else 0,
        "runs": runs,
        "baseline": "the same request sent to the engine directly",
    }
    if not bridge_ms:
        return {**out, "error": error or "no chat answer", "bridge_ttft_ms": None, "ratio": None}
    median = statistics.median(bridge_ms)
    return {
        **out,
        "bridge_ttft_ms": round(median, 1),
        "bridge_overhead_ms": round(median - direct, 1),
        "ratio": round(median / direct, 2),
    }


def run(options: dict[str, Any]) -> dict[str, Any]:
    runs = repeats(options)
    return run_on_tiny_model("vigil-bench-chat-", lambda m, root: measure(m, root, runs))


if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {})))
