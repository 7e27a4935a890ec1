"""A tiny random Gemma 3, and one real vLLM engine and one real vLLM server on it per session.

Loading vLLM costs 15-120 s on two cores (three processes each import it), so every engine here
is session-scoped and owned by the session's event loop: an ``AsyncLLM`` dies with its loop.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio

from analyzer_service.engines import plugin
from analyzer_service.engines.tiny import build_tiny_gemma3
from analyzer_service.engines.vllm_local import LocalVllmEngine
from analyzer_service.engines.vllm_remote import RemoteVllmEngine

MAX_IMAGES = 4
SERVED_NAME = "tiny-gemma3"
API_KEY = "test-key-do-not-leak"
# Ready in ~30 s on an idle 2-core machine; 190 s were seen with other test suites running.
SERVER_READY_S = 300.0
# Caps every request; long enough that aborts land mid-generation, short enough to run in full.
ENGINE_MAX_TOKENS = 300

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


@pytest.fixture(scope="session", autouse=True)
def vllm_plugin(tmp_path_factory: pytest.TempPathFactory) -> None:
    """vLLM's processes load the Gemma 3 PIL plugin through its entry point; make it findable."""
    plugin.ensure_entry_point(tmp_path_factory.mktemp("vllm-plugin"))


@pytest.fixture(scope="session")
def tiny_gemma(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return build_tiny_gemma3(tmp_path_factory.mktemp("tiny-gemma3"))


@pytest.fixture(scope="session")
def frames(tmp_path_factory: pytest.TempPathFactory) -> list[pathlib.Path]:
    """Eight small JPEGs of different sizes and colours, like sampled video frames."""
    from PIL import Image, ImageDraw

    root = tmp_path_factory.mktemp("frames")
    paths = []
    for n in range(8):
        image = Image.new("RGB", (160 + 16 * n, 120 + 8 * n), (30 * n, 200 - 20 * n, 90))
        ImageDraw.Draw(image).rectangle((10 + n, 10, 60 + 4 * n, 50), fill=(255, 255, 255))
        path = root / f"frame-{n}.jpg"
        image.save(path, quality=85)
        paths.append(path)
    return paths


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def local_engine(
    tiny_gemma: pathlib.Path, request: pytest.FixtureRequest
) -> AsyncIterator[LocalVllmEngine]:
    if any("vllm_server" in getattr(item, "fixturenames", ()) for item in request.session.items):
        # Loading is mostly single-threaded imports: the server's overlaps this one's.
        request.getfixturevalue("vllm_server_process")
    engine = LocalVllmEngine(
        str(tiny_gemma),
        served_name=SERVED_NAME,
        dtype="bfloat16",
        max_model_len=2048,
        max_images=MAX_IMAGES,
        max_tokens=ENGINE_MAX_TOKENS,
        temperature=1.0,
        seed=0,
        engine_args={"enforce_eager": True},
        # A random model would stop at a random <eos>; ignoring it makes lengths exact.
        sampling_args={"ignore_eos": True},
    )
    await engine.start()
    try:
        yield engine
    finally:
        await engine.shutdown()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclasses.dataclass
class ServerProcess:
    url: str
    process: subprocess.Popen[bytes]
    log: pathlib.Path


@pytest.fixture(scope="session")
def vllm_server_process(
    tiny_gemma: pathlib.Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """vLLM's own OpenAI server on the tiny model on a free loopback port, starting (not ready)."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("vllm-server") / "server.log"
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(tiny_gemma), "--served-model-name", SERVED_NAME,
        "--host", "127.0.0.1", "--port", str(port), "--api-key", API_KEY,
        "--dtype", "bfloat16", "--max-model-len", "2048", "--enforce-eager",
        "--limit-mm-per-prompt", f'{{"image": {MAX_IMAGES}}}',
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield ServerProcess(f"http://127.0.0.1:{port}", process, log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def vllm_server(vllm_server_process: ServerProcess) -> str:
    """The URL of the tiny model's vLLM server, once it answers /health."""
    server = vllm_server_process
    deadline = time.monotonic() + SERVER_READY_S
    while True:
        if server.process.poll() is not None:
            pytest.fail(f"vLLM server exited {server.process.returncode}:\n{tail(server.log)}")
        if time.monotonic() > deadline:
            pytest.fail(f"vLLM server not ready in {SERVER_READY_S} s:\n{tail(server.log)}")
        try:
            if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                return server.url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)


def tail(path: pathlib.Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@pytest_asyncio.fixture(loop_scope="session")
async def remote_engine(vllm_server: str) -> AsyncIterator[RemoteVllmEngine]:
    async with RemoteVllmEngine(
        vllm_server,
        SERVED_NAME,
        api_key=API_KEY,
        temperature=1.0,
        max_tokens=ENGINE_MAX_TOKENS,
        extra_body={"ignore_eos": True},
    ) as engine:
        yield engine
