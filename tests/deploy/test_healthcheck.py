"""The containers' health check (deploy/docker/healthcheck.py) against real servers: a gRPC server
with the services' own health (vigil.core.serving) and an HTTP server, each healthy and not."""

from __future__ import annotations

import asyncio
import http.server
import pathlib
import sys
import threading
from collections.abc import Iterator

import pytest

from vigil.core.serving import Service

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "deploy" / "docker" / "healthcheck.py"


async def healthcheck(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(SCRIPT), *args, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await process.communicate()
    assert process.returncode is not None
    return process.returncode, stderr.decode()


async def test_grpc_health_follows_the_service() -> None:
    service = Service(service_names=["vigil.test.v1.TestService"])
    port = await service.start("127.0.0.1", 0)
    target = f"127.0.0.1:{port}"
    try:
        assert await healthcheck("grpc", target) == (0, "")
        await service.set_serving(False)
        code, why = await healthcheck("grpc", target)
        assert (code, why.strip()) == (1, f"{target}: NOT_SERVING")
    finally:
        await service.stop(0)
    code, why = await healthcheck("grpc", target)
    assert (code, why.strip()) == (1, f"{target}: UNAVAILABLE")


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 503)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


async def test_http_health_needs_a_2xx(http_port: int) -> None:
    base = f"http://127.0.0.1:{http_port}"
    assert await healthcheck("http", f"{base}/health") == (0, "")
    code, why = await healthcheck("http", f"{base}/ready")
    assert code == 1
    assert "503" in why
    assert (await healthcheck("http"))[0] == 2
