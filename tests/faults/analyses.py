"""Analyzer clients of the fault tests: slow-to-sample videos, uploads and event histories."""

from __future__ import annotations

import contextlib
import pathlib
import tempfile
from collections.abc import AsyncIterator
from fractions import Fraction
from typing import Any

import av
import grpc
import numpy as np

from vigil.analyzer.v1 import analyzer_service_pb2 as apb
from vigil.analyzer.v1 import analyzer_service_pb2_grpc as apb_grpc
from vigil.core import upload_protocol

UPLOAD_CHUNK = 256 * 1024


_VIDEOS: dict[tuple[int, int, int, int, int], bytes] = {}


def video(
    *, frames: int, fps: int = 25, width: int = 160, height: int = 120, gop: int = 250
) -> bytes:
    """``write_video``'s bytes, made once per test session for each set of parameters."""
    key = (frames, fps, width, height, gop)
    if key not in _VIDEOS:
        with tempfile.TemporaryDirectory() as tmp:
            path = pathlib.Path(tmp) / "video.mp4"
            _VIDEOS[key] = write_video(
                path, frames=frames, fps=fps, width=width, height=height, gop=gop
            )
    return _VIDEOS[key]


def write_video(
    path: pathlib.Path,
    *,
    frames: int,
    fps: int = 25,
    width: int = 160,
    height: int = 120,
    gop: int = 250,
) -> bytes:
    """An H.264 MP4 of changing frames; a long ``gop`` makes every seek decode far (slow jobs)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(
            "libx264",
            rate=Fraction(fps),
            options={"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"},
        )
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(frames):
            image = np.zeros((height, width, 3), np.uint8)
            image[:, : width // 2] = (index * 7) % 256
            image[:, width // 2 :] = (index * 13) % 256
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path.read_bytes()


def slow_options(frames: int = 64) -> apb.AnalysisOptions:
    """Uniform sampling of many frames: on a long-GOP video each one decodes from the start."""
    return apb.AnalysisOptions(
        sampling_policy=apb.SAMPLING_POLICY_UNIFORM, max_frames=frames, skip_detection=True
    )


@contextlib.asynccontextmanager
async def analyzer_stub(address: str) -> AsyncIterator[apb_grpc.AnalyzerServiceAsyncStub]:
    async with grpc.aio.insecure_channel(address) as channel:
        yield apb_grpc.AnalyzerServiceStub(channel)


async def upload(
    stub: apb_grpc.AnalyzerServiceAsyncStub, data: bytes, *, start: bool, **options: Any
) -> apb.UploadVideoResponse:
    header = apb.UploadHeader(
        name="clip.mp4", size=len(data), start_analysis=start, options=slow_options(**options)
    )
    call = stub.UploadVideo(None, timeout=30)
    return await upload_protocol.send(call, header, upload_protocol.pieces(data, UPLOAD_CHUNK))


async def history(
    stub: apb_grpc.AnalyzerServiceAsyncStub, job_id: str, after: int = 0
) -> list[apb.StreamAnalysisEventsResponse]:
    """Every event of a job from ``after`` up to its terminal one (follows a running job)."""
    request = apb.StreamAnalysisEventsRequest(job_id=job_id, after_sequence=after)
    return [e async for e in stub.StreamAnalysisEvents(request, timeout=60)]


def terminal(events: list[apb.StreamAnalysisEventsResponse]) -> list[str]:
    return [k for e in events if (k := e.WhichOneof("event")) in ("complete", "error")]
