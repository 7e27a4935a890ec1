"""Browser fixtures: Debian's Chromium, headless, driven by Playwright."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, async_playwright

from tests.e2e.support import CHROMIUM, CHROMIUM_ARGS


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
