"""Receiving an uploaded video: to the media storage as it arrives, hashed on the way, probed in
a child."""

from __future__ import annotations

import asyncio
import hashlib
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from analyzer_service import media, sampling
from analyzer_service.isolation import MediaWorkers, RemoteError, WorkerCrashed, WorkerTimeout
from analyzer_service.media_storage import MediaStorage, VideoWrite
from analyzer_service.settings import AnalyzerSettings
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.core.errors import IdleTimeout, InvalidInput, TooLarge

T = TypeVar("T")

# Left free on the disk beyond the upload itself, for frames and the database.
DISK_RESERVE_BYTES = 256 * 1024**2
MAX_NAME_CHARS = 255


def display_name(name: str) -> str:
    """The caller's file name made safe to show: no directories, no control characters."""
    name = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    return name[:MAX_NAME_CHARS] or "video"


class _Hashed:
    """The video being written, hashed and counted on the way; blocking methods run in a
    thread."""

    def __init__(self, write: VideoWrite) -> None:
        self.write_to = write
        self.size = 0
        self._hash = hashlib.sha256()

    def write(self, chunk: bytes) -> None:
        self.write_to.write(chunk)
        self._hash.update(chunk)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


async def receive(
    requests: AsyncIterator[pb.UploadVideoRequest],
    *,
    settings: AnalyzerSettings,
    workers: MediaWorkers,
    storage: MediaStorage,
    on_accepted: Callable[[], Awaitable[None]] | None = None,
) -> tuple[pb.UploadHeader, pb.Video]:
    """Store and probe one upload; it is stored in ``storage`` under ``video.id``.

    ``on_accepted`` is awaited once the header passed its checks, before any chunk is read. A
    header ``size`` of 0 means "not known in advance" (a browser's multipart form through the
    bridge): the upload is then bounded by ``max_upload_bytes`` alone. A caller that sends
    nothing for ``upload_idle_timeout_s`` ends the upload with IdleTimeout.
    """
    requests = _idle_limited(requests, settings.upload_idle_timeout_s)
    first = await anext(requests, None)
    if first is None or first.WhichOneof("payload") != "header":
        raise InvalidInput("the first message of an upload must be its header")
    header = first.header
    if header.start_analysis:
        # Checked before any bytes arrive, so a bad request wastes no upload.
        sampling.check_options(header.options, settings)
    if header.size > settings.max_upload_bytes:
        raise TooLarge(_too_large(settings.max_upload_bytes))
    await check_room(header.size, settings, storage)
    if on_accepted is not None:
        await on_accepted()
    video = await store(
        _chunks(requests),
        name=header.name,
        size=header.size,
        settings=settings,
        workers=workers,
        storage=storage,
    )
    return header, video


async def check_room(size: int, settings: AnalyzerSettings, storage: MediaStorage) -> None:
    """TooLarge (INSUFFICIENT_STORAGE) unless the storage has room for ``size`` bytes (0: not
    known, counted as the largest a video may be) and the reserve."""
    free = await asyncio.to_thread(storage.free_bytes)
    if (size or settings.max_upload_bytes) + DISK_RESERVE_BYTES > free:
        raise TooLarge("not enough disk space for this upload", code="INSUFFICIENT_STORAGE")


async def store(
    chunks: AsyncIterator[bytes],
    *,
    name: str,
    size: int,
    settings: AnalyzerSettings,
    workers: MediaWorkers,
    storage: MediaStorage,
) -> pb.Video:
    """Write ``chunks`` to ``storage`` as a new video, hashed on the way, and probe it; ``size``
    is the declared size (0: not known). Uploads and recordings fetched from the detector
    service are stored alike, under the same limits. Other replicas see the video only once it
    is whole and probed."""
    written: _Hashed | None = None
    try:
        written = _Hashed(await _begun(storage))
        async for chunk in chunks:
            written.size += len(chunk)
            # Checked before writing, so an oversized upload never reaches the storage.
            if written.size > settings.max_upload_bytes:
                raise TooLarge(_too_large(settings.max_upload_bytes))
            if size and written.size > size:
                raise InvalidInput(f"received more bytes than the declared size ({size})")
            # Hashing and writing a chunk take milliseconds; a thread keeps them off the loop.
            await _settled(written.write, chunk)
        if size and written.size != size:
            raise InvalidInput(f"received {written.size} bytes but the header declared {size}")
        if written.size == 0:
            raise InvalidInput("the upload is empty")
        source = await _settled(written.write_to.staged_source)
        probe = await _probe(source, settings, workers)
        await _settled(written.write_to.commit)
    except BaseException:
        # Client gone, refused or failed: nothing of the upload may stay behind (not even the
        # committed video, when the cancel came just after the commit).
        if written is not None:
            await asyncio.shield(asyncio.to_thread(written.write_to.abort))
        raise

    video = pb.Video(
        id=written.write_to.video_id,
        name=display_name(name),
        size=written.size,
        sha256=written.hexdigest(),
        duration_s=probe.duration_s,
        fps=probe.fps,
        width=probe.width,
        height=probe.height,
        frame_count=probe.frame_count,
        codec=probe.codec,
    )
    video.uploaded_at.GetCurrentTime()
    return video


async def _chunks(requests: AsyncIterator[pb.UploadVideoRequest]) -> AsyncIterator[bytes]:
    async for message in requests:
        if message.WhichOneof("payload") != "chunk":
            raise InvalidInput("only the first message of an upload may be a header")
        yield message.chunk


async def _settled(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a thread. A cancel (deadline, client gone) cannot stop the thread, so it
    is passed on only once the thread is done: the clean-up never races a write or a rename."""
    running = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:
        await asyncio.wait([running])
        raise


async def _begun(storage: MediaStorage) -> VideoWrite:
    """A new video write, begun in a thread. A cancel that comes while it begins waits for it
    and aborts it, so that not even an empty write stays behind."""
    beginning = asyncio.ensure_future(asyncio.to_thread(storage.begin_video))
    try:
        return await asyncio.shield(beginning)
    except asyncio.CancelledError:
        await asyncio.wait([beginning])
        if not beginning.cancelled() and beginning.exception() is None:
            await asyncio.to_thread(beginning.result().abort)
        raise


async def _idle_limited(
    requests: AsyncIterator[pb.UploadVideoRequest], idle_s: float
) -> AsyncIterator[pb.UploadVideoRequest]:
    """``requests``, ended with IdleTimeout when the next message takes longer than ``idle_s``:
    a client that stalls must not hold its upload slot (and a part file) for ever."""
    while True:
        try:
            async with asyncio.timeout(idle_s):
                message = await anext(requests)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise IdleTimeout(
                f"no data for {idle_s:g} s: the upload idle timeout ended the upload"
            ) from None
        yield message


def _too_large(limit: int) -> str:
    return f"the upload exceeds the limit of {limit} bytes"


async def _probe(path: str, settings: AnalyzerSettings, workers: MediaWorkers) -> media.ProbeResult:
    try:
        probe = await workers.call(settings.probe_timeout_s, media.probe, path)
    except RemoteError as exc:
        raise InvalidInput(f"not a usable video: {exc.message}") from exc
    except WorkerCrashed as exc:
        raise InvalidInput("not a usable video: the decoder crashed reading it") from exc
    except WorkerTimeout as exc:
        raise InvalidInput(
            f"not a usable video: reading it took longer than {settings.probe_timeout_s:g} s"
        ) from exc
    check_limits(probe, settings)
    return probe


def check_limits(probe: media.ProbeResult, settings: AnalyzerSettings) -> None:
    problems: list[str] = []
    if probe.duration_s > settings.max_duration_s:
        problems.append(
            f"duration {probe.duration_s:.0f} s is over the limit of {settings.max_duration_s:g} s"
        )
    # Orientation-free: compare long side with long side and short with short.
    long_side, short_side = max(probe.width, probe.height), min(probe.width, probe.height)
    long_max = max(settings.max_width, settings.max_height)
    short_max = min(settings.max_width, settings.max_height)
    if long_side > long_max or short_side > short_max:
        problems.append(
            f"size {probe.width}x{probe.height} is over the limit of "
            f"{settings.max_width}x{settings.max_height}"
        )
    if probe.fps > settings.max_fps:
        problems.append(f"{probe.fps:g} fps is over the limit of {settings.max_fps:g}")
    if problems:
        raise InvalidInput("video refused: " + "; ".join(problems))
