"""What the end-to-end tests share: how Debian's Chromium is launched (headless, driven by
Playwright, whose own browser downloads are never used), where screenshots go, and the bridge
served by uvicorn in the test's event loop exactly as ``python -m bridge`` serves it."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib

import uvicorn

from bridge.app import create_app
from bridge.server import config, listen
from bridge.settings import BridgeSettings

CHROMIUM = pathlib.Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OUTPUT = pathlib.Path(__file__).resolve().parents[2] / "test-output"


class BridgeServer:
    """The bridge on a socket of its own; ``stop`` and ``start`` again keep the port."""

    def __init__(self, settings: BridgeSettings) -> None:
        self.settings = settings
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        settings = self.settings.model_copy(update={"port": self.port})
        sock = listen(settings)
        self.port = sock.getsockname()[1]
        options = {"loop": "none", "log_level": "warning", "timeout_graceful_shutdown": 1}
        server = uvicorn.Server(config(create_app(settings), settings, **options))
        task = asyncio.create_task(server.serve(sockets=[sock]))
        async with asyncio.timeout(5):
            while not server.started:
                if task.done():
                    task.result()
                    raise AssertionError("the bridge stopped while starting")
                await asyncio.sleep(0.02)
        self._server, self._task = server, task

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._task, 5)
        self._server = self._task = None
