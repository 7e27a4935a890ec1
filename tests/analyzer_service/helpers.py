"""Helpers of the analyzer tests: coded test videos, a fake engine, upload and follow calls."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from fractions import Fraction
from typing import TypeAlias

import av
import cv2
import grpc
import numpy as np

from analyzer_service.engine import Delta, EngineLimits, GenerateRequest, Lifecycle
from analyzer_service.server import AnalyzerServer
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.analyzer.v1 import analyzer_service_pb2_grpc as pb_grpc
from vigil.core import upload_protocol

CHUNK = 256 * 1024

StartServer = Callable[..., Awaitable[AnalyzerServer]]
Stub: TypeAlias = "pb_grpc.AnalyzerServiceAsyncStub"


def coded_frame(index: int, width: int, height: int) -> np.ndarray:
    """A frame whose halves spell its index modulo 256, to check which frame a sample is."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 2] = (index % 16) * 16 + 8
    image[:, width // 2 :] = (index // 16 % 16) * 16 + 8
    return image


def frame_index_of(image: np.ndarray) -> int:
    width = image.shape[1]
    low = round((float(image[:, : width // 4].mean()) - 8) / 16)
    high = round((float(image[:, 3 * width // 4 :].mean()) - 8) / 16)
    return high * 16 + low


def write_mp4v(path: pathlib.Path, *, seconds: float, fps: int, width: int, height: int) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
    for index in range(round(seconds * fps)):
        writer.write(coded_frame(index, width, height))
    writer.release()


def write_h264(
    path: pathlib.Path, *, frames: int, rate: Fraction, width: int, height: int, gop: int = 250
) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate, options={"g": str(gop)})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(coded_frame(index, width, height), format="bgr24")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_scenes(
    path: pathlib.Path,
    scenes: list[tuple[float, tuple[int, int, int]]],
    *,
    fps: int = 10,
    width: int = 64,
    height: int = 64,
    gop: int = 250,
) -> None:
    """H.264 of solid-colour scenes: (seconds, BGR colour) each, cut from one to the next."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"g": str(gop)})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        index = 0
        for seconds, colour in scenes:
            image = np.zeros((height, width, 3), np.uint8)
            image[:] = colour
            for _ in range(round(seconds * fps)):
                frame = av.VideoFrame.from_ndarray(image, format="bgr24")
                frame.pts = index
                index += 1
                for packet in stream.encode(frame):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def kinds(events: list[pb.StreamAnalysisEventsResponse]) -> list[str | None]:
    return [e.WhichOneof("event") for e in events]


def steps(events: list[pb.StreamAnalysisEventsResponse]) -> list[tuple[int, float, str]]:
    """(stage, percent, message) of the progress events."""
    return [
        (e.progress.stage, e.progress.percent, e.progress.message)
        for e in events
        if e.HasField("progress")
    ]


def is_chat(request: GenerateRequest) -> bool:
    # The service names chat requests "<job id>-chat-<n>", summaries by the job id alone.
    return "-chat-" in request.request_id


class FakeEngine(Lifecycle):
    """Answers with fixed text: ``text`` to a summary, ``chat_text`` (else ``text``) in chat.

    With ``block`` a summary waits until ``release()`` (a job held mid-inference); chat answers
    never wait. ``accepts_images=False`` makes it a text-only model.
    """

    model = "fake/model"

    def __init__(
        self,
        *,
        block: bool = False,
        text: str = "A person walks in at [00:02].",
        chat_text: str | None = None,
        accepts_images: bool | None = None,
    ) -> None:
        self.block = block
        self.text = text
        self.chat_text = text if chat_text is None else chat_text
        self.limits = EngineLimits(accepts_images=accepts_images)
        self.requests: list[GenerateRequest] = []
        self.aborted: list[str] = []
        self._released = asyncio.Event()

    def release(self) -> None:
        """Let held summaries (and those to come) answer."""
        self._released.set()

    async def deltas(self, request: GenerateRequest) -> AsyncGenerator[Delta, None]:
        self.requests.append(request)
        chat = is_chat(request)
        if self.block and not chat:
            await self._released.wait()
        for word in (self.chat_text if chat else self.text).split(" "):
            yield Delta(word + " ", 1)

    async def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)

    async def health(self) -> bool:
        return True


def connect(server: AnalyzerServer) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")


def upload_requests(
    data: bytes,
    *,
    name: str = "clip.mp4",
    size: int | None = None,
    start: bool = True,
    options: pb.AnalysisOptions | None = None,
) -> Iterator[pb.UploadVideoRequest]:
    header = pb.UploadHeader(
        name=name, size=len(data) if size is None else size, start_analysis=start, options=options
    )
    yield pb.UploadVideoRequest(header=header)
    for offset in range(0, len(data), CHUNK):
        yield pb.UploadVideoRequest(chunk=data[offset : offset + CHUNK])


async def upload(
    stub: Stub,
    data: bytes,
    *,
    name: str = "clip.mp4",
    start: bool = True,
    options: pb.AnalysisOptions | None = None,
) -> pb.UploadVideoResponse:
    """A well-behaved upload, as the SDK sends it (``vigil.core.upload_protocol``)."""
    header = pb.UploadHeader(name=name, size=len(data), start_analysis=start, options=options)
    return await upload_protocol.send(
        stub.UploadVideo(None), header, upload_protocol.pieces(data, CHUNK)
    )


async def events_of(
    stub: Stub, job_id: str, after: int = 0
) -> list[pb.StreamAnalysisEventsResponse]:
    request = pb.StreamAnalysisEventsRequest(job_id=job_id, after_sequence=after)
    return [event async for event in stub.StreamAnalysisEvents(request)]


async def wait_for_event(
    stub: Stub, job_id: str, kind: str, *, percent: float | None = None
) -> pb.StreamAnalysisEventsResponse:
    """Follow the job until an event of ``kind`` (a oneof name) arrives, a progress event at
    ``percent`` if given; the stream is then left."""
    request = pb.StreamAnalysisEventsRequest(job_id=job_id)
    call = stub.StreamAnalysisEvents(request)
    async for event in call:
        if event.WhichOneof("event") == kind and (
            percent is None or event.progress.percent == percent
        ):
            call.cancel()
            return event
    raise AssertionError(f"job {job_id} ended without a {kind} event")
