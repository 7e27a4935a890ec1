"""Upload helpers: names shown to people, the limits a video must meet, and a cancel at any
moment of an upload leaving no file behind."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from analyzer_service import media, shared_directory, uploads
from analyzer_service.isolation import MediaWorkers
from analyzer_service.settings import AnalyzerSettings
from analyzer_service.shared_directory import SharedDirectory
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.core.errors import InvalidInput


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("clip.mp4", "clip.mp4"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\x\\evil.mp4", "evil.mp4"),
        ("a\x00b\x1b[31mc.mp4", "ab[31mc.mp4"),
        ("", "video"),
        ("/", "video"),
        ("x" * 300, "x" * 255),
    ],
)
def test_display_name_keeps_only_a_safe_base_name(raw: str, shown: str) -> None:
    assert uploads.display_name(raw) == shown


def probe(
    width: int = 1280, height: int = 720, fps: float = 30.0, duration_s: float = 60.0
) -> media.ProbeResult:
    return media.ProbeResult(
        duration_s=duration_s,
        fps=fps,
        width=width,
        height=height,
        frame_count=round(duration_s * fps),
        codec="h264",
    )


def test_limits_accept_portrait_and_landscape_4k() -> None:
    settings = AnalyzerSettings()
    uploads.check_limits(probe(3840, 2160), settings)
    uploads.check_limits(probe(2160, 3840), settings)


@pytest.mark.parametrize(
    ("video", "reason"),
    [
        (probe(4096, 2160), "size 4096x2160"),
        (probe(2200, 2200), "size 2200x2200"),
        (probe(fps=300.0), "300 fps"),
        (probe(duration_s=7201.0), "duration 7201 s"),
    ],
)
def test_limits_refuse_with_the_reason(video: media.ProbeResult, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        uploads.check_limits(video, AnalyzerSettings())


def slowed(fn: Callable[..., Any], started: threading.Event) -> Callable[..., Any]:
    """``fn`` that does its work, signals it, then takes 0.3 s more to return (a loaded disk):
    a cancel meanwhile finds the work done but the thread not yet back."""

    def slow(*args: Any, **kwargs: Any) -> Any:
        result = fn(*args, **kwargs)
        started.set()
        time.sleep(0.3)
        return result

    return slow


@pytest.mark.parametrize("stage", ["open", "write", "rename"])
async def test_a_cancel_while_a_thread_touches_the_file_leaves_nothing(
    stage: str, settings: AnalyzerSettings, short_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A deadline or a client leaving cancels the handler at any await; the thread it was
    # waiting on goes on, and may create or move the file after the cancel.
    started = threading.Event()
    write = shared_directory._DirectoryWrite
    if stage == "open":
        monkeypatch.setattr(shared_directory, "_DirectoryWrite", slowed(write, started))
    elif stage == "write":
        monkeypatch.setattr(write, "write", slowed(write.write, started))
    else:
        monkeypatch.setattr(os, "replace", slowed(os.replace, started))

    async def requests() -> AsyncIterator[pb.UploadVideoRequest]:
        yield pb.UploadVideoRequest(header=pb.UploadHeader(name="a.mp4", size=len(short_bytes)))
        yield pb.UploadVideoRequest(chunk=short_bytes)

    workers = MediaWorkers(1)
    storage = SharedDirectory(settings.data_dir, replica="a")
    try:
        task = asyncio.create_task(
            uploads.receive(requests(), settings=settings, workers=workers, storage=storage)
        )
        while not started.is_set():  # noqa: ASYNC110 - the thread sets a threading.Event
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        await workers.close()
    # Checked at once: the clean-up ran after the thread, not beside it.
    assert os.listdir(settings.videos_dir) == []
