"""Fixtures shared by every test package: the environment, and one real language model.

The model is a tiny randomly initialised Gemma 3 built on the spot; ``llm_engine`` is the one
in-process vLLM engine on it for the whole session (see ``tests/llm.py``: it runs on its own loop
thread, so tests on any event loop share it), and ``vllm_server`` is vLLM's own OpenAI server on
it, a subprocess on a free loopback port, for the HTTP engine. Each loads once per session, only
when a test asks for it; both load at once when the session needs both.

Tests that kill the server are marked ``kills_vllm_server`` and run after all others.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.llm import (
    API_KEY,
    MAX_IMAGES,
    MAX_MODEL_LEN,
    SERVED_NAME,
    ServerProcess,
    SharedEngine,
    TokenCounter,
    free_port,
    make_engine,
    tail,
)
from vigil.devtools.postgres import PostgresServer, running_postgres
from vigil.devtools.redis_server import RedisServer, running_redis

# Tests never talk to anything but this machine; model hubs are off limits.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
os.environ.setdefault("VLLM_HOST_IP", "127.0.0.1")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

# Ready in ~30 s on an idle 2-core machine; 190 s were seen with other test suites running.
SERVER_READY_S = 300.0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "kills_vllm_server: kills the session's vLLM server; runs after all others"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Stable: everything else keeps its order, the killers go last.
    items.sort(key=lambda item: item.get_closest_marker("kills_vllm_server") is not None)


@pytest.fixture(scope="session")
def vllm_plugin() -> None:
    """vLLM's processes load the Gemma 3 PIL plugin through its installed entry point."""
    from analyzer_service.engines import plugin

    assert plugin.installed(), "the vLLM plugin entry point is not installed: run `make install`"


@pytest.fixture(scope="session")
def tiny_gemma(vllm_plugin: None, tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    from vigil.devtools.tiny_gemma3 import build_tiny_gemma3

    return build_tiny_gemma3(tmp_path_factory.mktemp("tiny-gemma3"))


def _needs(request: pytest.FixtureRequest, name: str) -> bool:
    return any(name in getattr(item, "fixturenames", ()) for item in request.session.items)


@pytest.fixture(scope="session")
def llm_engine(tiny_gemma: pathlib.Path, request: pytest.FixtureRequest) -> Iterator[SharedEngine]:
    """The session's one vLLM engine (tiny Gemma 3, at most 4 images a prompt, <eos> ignored),
    counting the tokens it generates (``llm_engine.tokens``)."""
    if _needs(request, "vllm_server"):
        # Loading is mostly single-threaded imports: the server's overlaps this one's.
        request.getfixturevalue("vllm_server_process")
    tokens = TokenCounter()
    engine = SharedEngine(make_engine(tiny_gemma, tokens), tokens)
    try:
        engine.load()
        yield engine
    finally:
        engine.stop()


@pytest.fixture(scope="session")
def vllm_server_process(
    tiny_gemma: pathlib.Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """vLLM's own OpenAI server on the tiny model on a free loopback port, starting (not ready).

    It leads a process group of its own (its engine core is a child): killing the group is the
    server dying.
    """
    port = free_port()
    log_path = tmp_path_factory.mktemp("vllm-server") / "server.log"
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(tiny_gemma), "--served-model-name", SERVED_NAME,
        "--host", "127.0.0.1", "--port", str(port), "--api-key", API_KEY,
        "--dtype", "bfloat16", "--max-model-len", str(MAX_MODEL_LEN), "--enforce-eager",
        "--limit-mm-per-prompt", f'{{"image": {MAX_IMAGES}}}',
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield ServerProcess(f"http://127.0.0.1:{port}", process, log_path)
    finally:
        kill_server(process, signal.SIGTERM)


def kill_server(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Signal the server's whole process group and wait for the server (SIGKILL after 30 s)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    # The engine core may outlive the server by a moment; leave nothing behind.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


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


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server (vigil.devtools.postgres), started on first use."""
    with running_postgres() as server:
        yield server


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> Iterator[str]:
    """The URL of an empty database of its own (password included), dropped afterwards."""
    url = postgres.create_database()
    yield url
    postgres.drop_database(url)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The session's Redis server (vigil.devtools.redis_server), started on first use."""
    with running_redis() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of the session's Redis, emptied for this test (a test may restart it)."""
    if redis_server.process is None:
        redis_server.start()
    redis_server.flush()
    return redis_server.url
