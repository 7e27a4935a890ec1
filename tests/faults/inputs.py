"""Helpers of the bad-input, fuzzing and secrets tests: the real services on free ports, hostile
media made on the spot, and upload calls.

Services run in-process as production runs them (``serve`` for the gRPC services, uvicorn with
``bridge.server.config`` for the bridge) so the tests can look at their state (connection counts,
worker processes, the data directory) as well as at what clients see.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import pathlib
import re
import struct
import threading
import zipfile
from collections.abc import AsyncIterator, Awaitable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import cv2
import grpc
import numpy as np
import uvicorn

from analyzer_service.server import AnalyzerServer
from analyzer_service.server import serve as serve_analyzer
from analyzer_service.settings import AnalyzerSettings
from bridge.app import create_app
from bridge.server import config, listen
from bridge.settings import BridgeSettings
from detector_service.server import DetectorServer
from detector_service.server import serve as serve_detector
from detector_service.settings import DetectorSettings
from vigil.analyzer.v1 import analyzer_service_pb2 as apb
from vigil.core import upload_protocol
from vigil.launcher import free_port

T = TypeVar("T")

UPLOAD_CHUNK = 64 * 1024
# What the analyzer names stored videos: a uuid4 in hex, nothing of the caller's name.
SERVER_MADE_NAME = re.compile(r"[0-9a-f]{32}")
HTML = b"<!DOCTYPE html>\n<html><head><title>x</title></head><body>not a video</body></html>\n"


# ------------------------------------------------------------------------------------ services


@dataclass
class RunningBridge:
    server: uvicorn.Server
    port: int
    settings: BridgeSettings

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def running_detector(**overrides: Any) -> AsyncIterator[DetectorServer]:
    fields: dict[str, Any] = {"port": 0, "backend": "none", "linger_s": 0.2}
    server = await serve_detector(DetectorSettings(**(fields | overrides)))
    try:
        yield server
    finally:
        await server.stop(0)


def analyzer_settings(data_dir: pathlib.Path, **overrides: Any) -> AnalyzerSettings:
    fields: dict[str, Any] = {
        "port": 0,
        "data_dir": data_dir,
        "media_workers": 1,
        "engine": "none",
        "default_sampling_policy": "seed",
        "detection_pass": False,
    }
    return AnalyzerSettings(**(fields | overrides))


@contextlib.asynccontextmanager
async def running_analyzer(
    data_dir: pathlib.Path, **overrides: Any
) -> AsyncIterator[AnalyzerServer]:
    server = await serve_analyzer(analyzer_settings(data_dir, **overrides))
    try:
        yield server
    finally:
        await server.stop(0)


@contextlib.asynccontextmanager
async def running_bridge(**overrides: Any) -> AsyncIterator[RunningBridge]:
    """The bridge under uvicorn on a free port; backends default to addresses nothing serves."""
    fields: dict[str, Any] = {
        "port": 0,
        "detector_address": f"127.0.0.1:{free_port()}",
        "analyzer_address": f"127.0.0.1:{free_port()}",
        "retry_initial_s": 0.1,
        "retry_max_s": 0.5,
    }
    settings = BridgeSettings(**(fields | overrides))
    sock = listen(settings)
    options = {"loop": "none", "log_level": "warning", "timeout_graceful_shutdown": 2}
    server = uvicorn.Server(config(create_app(settings), settings, **options))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("uvicorn exited during startup")
                await asyncio.sleep(0.01)
        yield RunningBridge(server, sock.getsockname()[1], settings)
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        sock.close()


@dataclass
class Stack:
    detector: DetectorServer
    analyzer: AnalyzerServer
    bridge: RunningBridge

    @property
    def videos_dir(self) -> pathlib.Path:
        return self.analyzer.settings.videos_dir


@contextlib.asynccontextmanager
async def running_stack(
    data_dir: pathlib.Path,
    *,
    detector: dict[str, Any] | None = None,
    analyzer: dict[str, Any] | None = None,
    bridge: dict[str, Any] | None = None,
) -> AsyncIterator[Stack]:
    """All three services, the bridge pointed at the other two."""
    # Its own data dir: sources added here (the fuzzers add many) are kept across restarts.
    detector = {"data_dir": data_dir / "detector", **(detector or {})}
    async with running_detector(**detector) as det:
        fields = {"detector_address": f"127.0.0.1:{det.port}", **(analyzer or {})}
        async with (
            running_analyzer(data_dir, **fields) as ana,
            running_bridge(
                detector_address=f"127.0.0.1:{det.port}",
                analyzer_address=f"127.0.0.1:{ana.port}",
                **(bridge or {}),
            ) as bri,
        ):
            yield Stack(det, ana, bri)


class LoopThread:
    """An event loop in a daemon thread, for synchronous tests (Hypothesis, schemathesis) that
    need services running while they call them."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="faults")
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@contextlib.contextmanager
def stack_in_thread(data_dir: pathlib.Path, **kwargs: Any) -> Iterator[tuple[Stack, LoopThread]]:
    """``running_stack`` on a loop in a thread; yields the stack and the loop."""
    loop = LoopThread()
    manager = running_stack(data_dir, **kwargs)
    try:
        stack = loop.run(manager.__aenter__())
        try:
            yield stack, loop
        finally:
            loop.run(manager.__aexit__(None, None, None))
    finally:
        loop.close()


# --------------------------------------------------------------------------------------- media


def frames(count: int, width: int, height: int) -> Iterator[np.ndarray]:
    for index in range(count):
        image = np.zeros((height, width, 3), np.uint8)
        x = (index * 7) % max(1, width - 8)
        cv2.rectangle(image, (x, height // 3), (x + 8, height // 3 + 8), (0, 200, 255), -1)
        yield image


def mp4(
    path: pathlib.Path, *, seconds: float = 2.0, fps: int = 10, size: tuple[int, int] = (160, 120)
) -> bytes:
    """A small MPEG-4 part 2 video (what cv2.VideoWriter has everywhere), its bytes."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
    assert writer.isOpened()
    for image in frames(round(seconds * fps), *size):
        writer.write(image)
    writer.release()
    return path.read_bytes()


def mjpeg_avi(
    path: pathlib.Path, *, count: int = 20, fps: int = 10, size: tuple[int, int] = (64, 48)
) -> bytes:
    """A small Motion-JPEG AVI: plain RIFF headers whose fields ``patch_avi`` can rewrite."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    for image in frames(count, *size):
        writer.write(image)
    writer.release()
    return path.read_bytes()


# Where each header field lives: (chunk id, offset into the chunk's data, struct format).
_AVI_FIELDS = {
    # avih (MainAVIHeader)
    "usec_per_frame": (b"avih", 0, "<I"),
    "total_frames": (b"avih", 16, "<I"),
    "avih_width": (b"avih", 32, "<I"),
    "avih_height": (b"avih", 36, "<I"),
    # strh (AVIStreamHeader of the video stream): the rate is rate/scale frames a second
    "scale": (b"strh", 20, "<I"),
    "rate": (b"strh", 24, "<I"),
    "length": (b"strh", 32, "<I"),
    # strf (BITMAPINFOHEADER)
    "width": (b"strf", 4, "<i"),
    "height": (b"strf", 8, "<i"),
}


def patch_avi(data: bytes, **fields: int) -> bytes:
    """The AVI with header fields rewritten: the container's claims, not its frames, change."""
    out = bytearray(data)
    for name, value in fields.items():
        chunk, offset, fmt = _AVI_FIELDS[name]
        at = out.find(chunk)
        assert at >= 0, f"no {chunk!r} chunk"
        struct.pack_into(fmt, out, at + 8 + offset, value)
    return bytes(out)


def patch_sof(data: bytes, width: int, height: int) -> bytes:
    """Every baseline JPEG frame header (SOF0) in ``data`` rewritten to claim width x height."""
    out = bytearray(data)
    at = 0
    found = 0
    while (at := out.find(b"\xff\xc0", at)) != -1:
        struct.pack_into(">HH", out, at + 5, height, width)
        at += 2
        found += 1
    assert found, "no SOF0 marker"
    return bytes(out)


def jpeg(width: int = 160, height: int = 120) -> bytes:
    ok, buf = cv2.imencode(".jpg", next(frames(1, width, height)))
    assert ok
    return bytes(buf.tobytes())


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("clip.mp4", b"\x00" * 4096)
        archive.writestr("readme.txt", "not a video")
    return buffer.getvalue()


# ------------------------------------------------------------------------------------- uploads


def upload_messages(
    data: bytes,
    *,
    name: str = "clip.mp4",
    size: int | None = None,
    start: bool = False,
    chunk: int = UPLOAD_CHUNK,
) -> Iterator[apb.UploadVideoRequest]:
    header = apb.UploadHeader(name=name, size=len(data) if size is None else size)
    header.start_analysis = start
    yield apb.UploadVideoRequest(header=header)
    for offset in range(0, len(data), chunk):
        yield apb.UploadVideoRequest(chunk=data[offset : offset + chunk])


async def grpc_upload(
    stub: Any, data: bytes, *, name: str = "clip.mp4", start: bool = False, deadline_s: float = 30
) -> apb.UploadVideoResponse:
    """A well-behaved upload, as the SDK sends it (``vigil.core.upload_protocol``)."""
    header = apb.UploadHeader(name=name, size=len(data), start_analysis=start)
    call = stub.UploadVideo(None, timeout=deadline_s)
    return await upload_protocol.send(call, header, upload_protocol.pieces(data, UPLOAD_CHUNK))


async def refusal(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    """The error a call ends with; fails the test if it succeeds."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error
    raise AssertionError("the call succeeded; a refusal was expected")


def stored(videos_dir: pathlib.Path) -> list[str]:
    """Names of the files in the analyzer's video directory."""
    return sorted(p.name for p in videos_dir.iterdir()) if videos_dir.exists() else []


async def wait_until_empty(videos_dir: pathlib.Path, within_s: float = 3.0) -> list[str]:
    """Wait for the video directory to hold no file; return what is left at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while (left := stored(videos_dir)) and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    return left
