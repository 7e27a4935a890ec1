"""The end-to-end tests' browser (Debian's Chromium, headless, driven by Playwright; its own
browser downloads are never used: ``make browser`` installs ``/usr/bin/chromium``), a real
detector (its test pattern, no model) and bridges that a test may stop and start again."""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, async_playwright

from detector_service.server import DetectorServer
from detector_service.server import serve as serve_detector
from detector_service.settings import DetectorSettings
from tests.e2e.live import Bridge

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


@pytest.fixture
def chromium() -> pathlib.Path:
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: `make browser` installs Debian's chromium"
    return CHROMIUM


@pytest.fixture
async def browser(chromium: pathlib.Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def detector(tmp_path: pathlib.Path) -> AsyncIterator[DetectorServer]:
    server = await serve_detector(
        DetectorSettings(port=0, backend="none", data_dir=tmp_path / "detector")
    )
    yield server
    await server.stop(0)


@pytest.fixture
async def bridges(detector: DetectorServer) -> AsyncIterator[list[Bridge]]:
    made: list[Bridge] = []
    yield made
    for bridge in made:
        with contextlib.suppress(Exception):
            await bridge.stop()
