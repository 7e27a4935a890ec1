"""Fixtures of the analyzer tests with a real model (vLLM on the tiny Gemma 3)."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import pytest

from analyzer_service.settings import AnalyzerSettings
from tests.analyzer_service.helpers import (
    StartServer,
    write_scenes,
)
from tests.analyzer_service.model.support import (
    BLACK,
    CHAT_TOKENS,
    RED,
    SUMMARY_TOKENS,
    Analysed,
    Recording,
    analyse,
)
from tests.llm import (
    MAX_MODEL_LEN,
    SharedEngine,
)


@pytest.fixture
def model_settings(settings: AnalyzerSettings) -> AnalyzerSettings:
    return settings.model_copy(
        update={
            "max_tokens": SUMMARY_TOKENS,
            "chat_max_tokens": CHAT_TOKENS,
            "engine_health_interval_s": 0.5,
        }
    )


@pytest.fixture(scope="session")
def knife_video(videos: pathlib.Path) -> bytes:
    """6 s at 10 fps: black, a knife (red) from 2 s to 4 s, black again."""
    path = videos / "knife.mp4"
    write_scenes(path, [(2.0, BLACK), (2.0, RED), (2.0, BLACK)], fps=10)
    return path.read_bytes()


@pytest.fixture
async def analysed(
    start_server: StartServer,
    model_settings: AnalyzerSettings,
    llm_engine: SharedEngine,
    knife_video: bytes,
) -> AsyncIterator[Analysed]:
    """A finished analysis of the knife video by the real model."""
    async with analyse(start_server, model_settings, llm_engine, knife_video) as done:
        yield done


@pytest.fixture
def long_engine(llm_engine: SharedEngine) -> Recording:
    """The session's engine allowing answers as long as the context, recording its requests."""
    return Recording(llm_engine.capped_at(MAX_MODEL_LEN))


@pytest.fixture
async def long_chat(
    start_server: StartServer,
    model_settings: AnalyzerSettings,
    long_engine: Recording,
    knife_video: bytes,
) -> AsyncIterator[Analysed]:
    """A finished analysis whose chat answers may fill the context (<eos> ignored): only an
    abort can end one early."""
    custom = model_settings.model_copy(update={"chat_max_tokens": MAX_MODEL_LEN})
    async with analyse(start_server, custom, long_engine, knife_video) as analysed:
        yield analysed
