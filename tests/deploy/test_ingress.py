"""The compose ingress (deploy/compose/nginx.conf) run by a real nginx in front of two real
bridges: Socket.IO's long-polling stays on the bridge that holds its session, and WebSockets are
upgraded through it. Only the addresses change (the compose service names become loopback
ports) and nginx's scratch paths move into the test's folder."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
import websockets

REPO = pathlib.Path(__file__).resolve().parents[2]
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (make system)")
READY_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{url}: the process exited"
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def ingress(tmp_path: pathlib.Path) -> Iterator[str]:
    """The ingress's URL, with two bridges behind it (no backends: the bridges still serve)."""
    processes: list[subprocess.Popen[bytes]] = []
    config = (REPO / "deploy" / "compose" / "nginx.conf").read_text()
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'clients'}"}
    try:
        for name in ("bridge-1", "bridge-2"):
            port = free_port()
            bridge = subprocess.Popen(
                [sys.executable, "-m", "bridge"],
                env={**env, "VIGIL_BRIDGE_PORT": str(port), "VIGIL_BRIDGE_LOG_LEVEL": "WARNING",
                     "VIGIL_BRIDGE_DETECTOR_ADDRESS": f"127.0.0.1:{free_port()}",
                     "VIGIL_BRIDGE_ANALYZER_ADDRESS": f"127.0.0.1:{free_port()}"},
                cwd=tmp_path,
            )  # fmt: skip
            processes.append(bridge)
            wait_for(f"http://127.0.0.1:{port}/health", bridge)
            config = config.replace(f"server {name}:8000", f"server 127.0.0.1:{port}")
        port = free_port()
        scratch = "".join(
            f"    {kind}_temp_path {tmp_path / kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        config = (
            config.replace("listen 8080;", f"listen 127.0.0.1:{port};")
            .replace("pid /tmp/nginx.pid;", f"pid {tmp_path / 'nginx.pid'};")
            .replace("http {\n", "http {\n" + scratch, 1)
        )
        assert "bridge-" not in config
        (tmp_path / "nginx.conf").write_text(config)
        assert NGINX is not None
        nginx = subprocess.Popen(
            [NGINX, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"),
             "-g", "daemon off; error_log stderr warn;"],
        )  # fmt: skip
        processes.append(nginx)
        wait_for(f"http://127.0.0.1:{port}/nginx-health", nginx)
        yield f"127.0.0.1:{port}"
    finally:
        for process in reversed(processes):
            stop(process)


def test_socketio_long_polling_sticks_to_one_bridge(ingress: str) -> None:
    # Every request of an engine.io session must reach the bridge that opened it; any other
    # answers 400 (unknown session). Stickiness is by client address, so all of these go to one.
    with httpx.Client(base_url=f"http://{ingress}", timeout=10.0) as client:
        for _ in range(5):
            opened = client.get("/socket.io/", params={"EIO": "4", "transport": "polling"})
            assert opened.status_code == 200, opened.text
            assert opened.text.startswith("0{"), opened.text
            sid = json.loads(opened.text[1:])["sid"]
            params = {"EIO": "4", "transport": "polling", "sid": sid}
            connected = client.post("/socket.io/", params=params, content=b"40")
            assert connected.status_code == 200, connected.text
            acked = client.get("/socket.io/", params=params)
            assert acked.status_code == 200, acked.text
            assert acked.text.startswith("40"), acked.text


async def test_websockets_are_upgraded_through_the_ingress(ingress: str) -> None:
    url = f"ws://{ingress}/socket.io/?EIO=4&transport=websocket"
    async with websockets.connect(url) as socket_io:
        opened = await socket_io.recv()
        assert isinstance(opened, str)
        assert opened.startswith("0{")
    async with httpx.AsyncClient(base_url=f"http://{ingress}") as client:
        health = await client.get("/health")
        assert health.status_code == 200
