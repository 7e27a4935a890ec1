"""The live view's services for the browser tests: a bridge that a test may stop and start again
on the same port, and helpers that watch the page."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
import uvicorn
from playwright.async_api import Page, expect

from bridge.app import create_app
from bridge.server import config, listen
from bridge.settings import BridgeSettings
from detector_service.server import DetectorServer

STEP_MS = 15_000


def free_port() -> int:
    """A port nothing listens on (bound and released at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Bridge:
    """The bridge served by uvicorn in this loop, which the test may stop and start again on the
    same port, as ``python -m bridge`` restarted would be."""

    def __init__(self, settings: BridgeSettings) -> None:
        self.settings = settings
        self.port = 0
        self.server: uvicorn.Server | None = None
        self.task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        settings = self.settings.model_copy(update={"port": self.port})
        sock = listen(settings)
        self.port = sock.getsockname()[1]
        options: dict[str, Any] = {"loop": "none", "log_level": "warning"}
        options["timeout_graceful_shutdown"] = 2
        self.server = uvicorn.Server(config(create_app(settings), settings, **options))
        self.task = asyncio.create_task(self.server.serve(sockets=[sock]))
        async with asyncio.timeout(10):
            while not self.server.started:
                if self.task.done():
                    self.task.result()
                    raise RuntimeError("uvicorn exited during startup")
                await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self.server is None or self.task is None:
            return
        self.server.should_exit = True
        await asyncio.wait_for(self.task, 10)
        self.server = self.task = None
        # Nothing listens any more: the page's tries are refused at once, not left hanging.
        with (
            pytest.raises(ConnectionRefusedError),
            socket.create_connection(("127.0.0.1", self.port)),
        ):
            pass


async def start_bridge(
    bridges: list[Bridge], detector: DetectorServer, tries: int, initial_s: float
) -> Bridge:
    bridge = Bridge(
        BridgeSettings(
            port=0,
            detector_address=f"127.0.0.1:{detector.port}",
            analyzer_address=f"127.0.0.1:{free_port()}",
            retry_initial_s=0.1,
            retry_max_s=0.5,
            reconnect_tries=tries,
            reconnect_initial_s=initial_s,
        )
    )
    bridges.append(bridge)
    await bridge.start()
    return bridge


async def frames(page: Page) -> int:
    return int(await page.get_by_test_id("frame-count").get_attribute("data-count") or "0")


async def watch_live(page: Page, url: str, setup: str | None = None) -> None:
    """Open the page (running the test's ``setup`` script in it, if any), press Start and wait
    for frames and the green dot."""
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    await page.goto(url + "/")
    if setup:
        await page.evaluate(setup)
    await page.get_by_test_id("start-button").click()
    await page.wait_for_function(
        "Number(document.getElementById('frame-count').dataset.count) > 3", timeout=STEP_MS
    )
    await expect(page.get_by_test_id("connection-dot")).to_have_attribute("data-state", "connected")
    assert not page_errors, page_errors
