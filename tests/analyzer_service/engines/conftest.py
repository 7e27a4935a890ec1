"""The engines' tests share the session's engine and server (``tests/conftest.py``)."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import pytest

from analyzer_service.engines.vllm_remote import RemoteVllmEngine
from tests.llm import (
    API_KEY,
    ENGINE_MAX_TOKENS,
    MAX_IMAGES,
    SERVED_NAME,
    SharedEngine,
    free_port,
)

__all__ = ["API_KEY", "ENGINE_MAX_TOKENS", "MAX_IMAGES", "SERVED_NAME", "free_port"]


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


@pytest.fixture
def local_engine(llm_engine: SharedEngine) -> SharedEngine:
    return llm_engine


@pytest.fixture
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
