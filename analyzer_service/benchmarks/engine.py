"""What the in-process vLLM engine costs on a tiny random Gemma 3: load, first token, decoding.

The model is built on the spot (no weights can be downloaded), so the figures measure vLLM's
overhead on this machine, not a real model's speed: engine load, time to first token (TTFT) for a
text-only prompt and for one with 8 frames (decoding the JPEGs, image processing, the vision tower
and the longer prefill), and decoding speed. The headline ``ratio`` is TTFT with 8 frames divided
by text-only TTFT. Caches are off so repeated runs do not hit each other's prefixes or images.

``tiny_engine``, ``ttft_ms``, ``repeats`` and ``run_on_tiny_model`` are shared with the ``chat``
benchmark, which runs the same engine under the analyzer and the bridge.

``python -m analyzer_service.benchmarks.engine '{"repeat": 5}'`` prints the figures as JSON;
``vigil bench engine`` runs it.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from analyzer_service.engines.vllm_local import LocalVllmEngine

FRAMES = 8
DECODE_TOKENS = 256

T = TypeVar("T")


def repeats(options: dict[str, Any]) -> int:
    """Each run is a full prompt through vLLM; a handful gives a stable median."""
    return max(3, min(int(options.get("repeat", 5)), 10))


def run_on_tiny_model(
    prefix: str, measure: Callable[[pathlib.Path, pathlib.Path], Coroutine[Any, Any, T]]
) -> T:
    """``measure(model, work)`` on a tiny random Gemma 3 built in a temporary directory
    (``work``, named after ``prefix``), offline, on an event loop of its own."""
    from analyzer_service.engines import plugin
    from vigil.devtools.tiny_gemma3 import build_tiny_gemma3

    for name, value in {
        "HF_HUB_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "VLLM_HOST_IP": "127.0.0.1",
        "VLLM_CPU_KVCACHE_SPACE": "1",
    }.items():
        os.environ.setdefault(name, value)
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        root = pathlib.Path(tmp)
        if not plugin.installed():
            raise RuntimeError("the vLLM plugin entry point is not installed: run `make install`")
        model = build_tiny_gemma3(root / "tiny-gemma3")
        # One loop owns the AsyncLLM from start to shutdown.
        return asyncio.run(measure(model, root))


def tiny_engine(
    model: pathlib.Path,
    max_images: int,
    max_tokens: int,
    *,
    engine_args: dict[str, Any] | None = None,
    **settings: Any,
) -> LocalVllmEngine:
    """The in-process engine as both benchmarks run it: eager, seeded, prefix caching off."""
    from analyzer_service.engines.vllm_local import LocalVllmEngine

    return LocalVllmEngine(
        str(model),
        dtype="bfloat16",
        max_model_len=2048,
        max_images=max_images,
        max_tokens=max_tokens,
        seed=0,
        engine_args={"enforce_eager": True, "enable_prefix_caching": False, **(engine_args or {})},
        **settings,
    )


def write_frames(directory: pathlib.Path, count: int, run: int) -> list[pathlib.Path]:
    """720p JPEGs, distinct per run so no cache can serve one run from another."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(run)
    paths = []
    for n in range(count):
        # Smooth gradients plus noise: compressible like a camera frame, unique per seed.
        base = np.linspace(0, 255, 1280, dtype=np.float32)[None, :, None]
        noise = rng.normal(0, 12, (720, 1280, 3)).astype(np.float32)
        pixels = np.clip(base + noise + 20 * n, 0, 255).astype(np.uint8)
        path = directory / f"run{run}-frame{n}.jpg"
        Image.fromarray(pixels).save(path, quality=80)
        paths.append(path)
    return paths


async def ttft_ms(engine: Any, request: Any) -> float:
    start = time.perf_counter()
    stream = engine.deltas(request)
    try:
        await anext(stream)
        return (time.perf_counter() - start) * 1000
    finally:
        await stream.aclose()


async def measure(model: pathlib.Path, root: pathlib.Path, runs: int) -> dict[str, Any]:
    engine = tiny_engine(
        model,
        FRAMES,
        DECODE_TOKENS,
        engine_args={"mm_processor_cache_gb": 0},
        temperature=1.0,
        sampling_args={"ignore_eos": True},
    )
    await engine.start()
    try:
        figures = await measure_started(engine, root, runs, FRAMES)
        load_s = engine.load_s
    finally:
        await engine.close()
    return {"name": "engine", "engine_load_s": round(load_s or 0.0, 1), **figures}


async def measure_started(
    engine: Any, root: pathlib.Path, runs: int, frames: int
) -> dict[str, Any]:
    """TTFT without and with ``frames`` frames, and decoding speed, on an engine already loaded
    that ignores <eos> (so that every decode run is as long as asked)."""
    from analyzer_service.engine import GenerateRequest

    work = root / "frames"
    work.mkdir(exist_ok=True)
    prompt = "Describe what happens in the frames. " * 4
    # One warm-up of each kind: the first request pays one-off allocations.
    await ttft_ms(engine, GenerateRequest("warm-text", prompt, [], 1))
    warm = write_frames(work, frames, runs)  # a seed the timed runs do not use
    await ttft_ms(engine, GenerateRequest("warm-frames", prompt, warm, 1))

    text_ms, frames_ms = [], []
    for run in range(runs):
        unique = f"Run {run}. {prompt}"
        text_ms.append(await ttft_ms(engine, GenerateRequest(f"t{run}", unique, [], 1)))
        images = write_frames(work, frames, run)
        frames_ms.append(await ttft_ms(engine, GenerateRequest(f"f{run}", unique, images, 1)))

    rates = []
    for run in range(runs):
        request = GenerateRequest(f"d{run}", f"Run {run}.", [], DECODE_TOKENS)
        count = 0
        first = last = 0.0
        async for _ in engine.outputs(request):
            last = time.perf_counter()
            if count == 0:
                first = last
            count += 1
        # Tokens after the first, over the time after the first: decoding alone.
        rates.append((count - 1) / (last - first))

    text = statistics.median(text_ms)
    with_frames = statistics.median(frames_ms)
    return {
        "ttft_text_ms": round(text, 1),
        f"ttft_{frames}_frames_ms": round(with_frames, 1),
        "ttft_per_frame_ms": round((with_frames - text) / frames, 1),
        "decode_tokens_per_s": round(statistics.median(rates), 1),
        "runs": runs,
        "ratio": round(with_frames / text, 2),
    }


def run(options: dict[str, Any]) -> dict[str, Any]:
    runs = repeats(options)
    return run_on_tiny_model("vigil-bench-engine-", lambda m, root: measure(m, root, runs))


if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {})))
