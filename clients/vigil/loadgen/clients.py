"""The load clients: each runs until cancelled and records what it saw in its ``ClientStats``.

Latency is capture time (stamped by whoever made the frame, on this machine's clock) to receipt.
Errors are counted by gRPC status name, ``ws_close_<code>``, ``ws_error_<code>`` (an error message
from the bridge) or the service's own error code carried in a response.
"""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.parse
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc
import orjson
import websockets
from google.protobuf.timestamp_pb2 import Timestamp
from websockets.asyncio.client import connect

from vigil.analyzer.v1 import analyzer_service_pb2 as apb
from vigil.analyzer.v1 import analyzer_service_pb2_grpc as apb_grpc
from vigil.core import upload_protocol
from vigil.core.channels import LIVE_CHANNEL_OPTIONS
from vigil.detector.v1 import detector_service_pb2 as dpb
from vigil.detector.v1 import detector_service_pb2_grpc as dpb_grpc
from vigil.loadgen.stats import ClientStats

if TYPE_CHECKING:
    from vigil.analyzer.v1.analyzer_service_pb2_grpc import AnalyzerServiceAsyncStub

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
]
# A slow viewer's kernel receive buffer: small, so the bridge feels the push-back within a frame.
SLOW_RCVBUF = 16 * 1024
_TAIL = b'","timestamp":'


def _ms_since(seconds: float) -> float:
    return (time.time() - seconds) * 1000.0


def _ts_seconds(ts: Timestamp) -> float:
    return ts.seconds + ts.nanos / 1e9


def parse_frame(message: bytes, binary: bool) -> dict[str, object] | None:
    """A frame message's small fields (timestamp, sequence, dropped), without touching the JPEG;
    None for a non-frame message. JSON frames keep the picture first, so the rest is a short
    tail (the bridge's layout, which the bare benchmark server copies)."""
    if binary:
        length = int.from_bytes(message[:4], "big")
        header: dict[str, object] = orjson.loads(message[4 : 4 + length])
        return header
    if not message.startswith(b'{"type":"frame"'):
        return None
    cut = message.rfind(_TAIL)
    fields: dict[str, object] = orjson.loads(b"{" + message[cut + 2 :])
    fields["type"] = "frame"
    return fields


def _error_name(error: BaseException) -> str:
    if isinstance(error, grpc.aio.AioRpcError):
        return error.code().name
    if isinstance(error, websockets.ConnectionClosed):
        code = error.rcvd.code if error.rcvd is not None else 1006
        return f"ws_close_{code}"
    if isinstance(error, websockets.InvalidStatus):
        return f"ws_http_{error.response.status_code}"
    if isinstance(error, OSError | websockets.InvalidHandshake):
        return "connect_error"
    return type(error).__name__


async def viewer(
    url: str,
    stats: ClientStats,
    *,
    binary: bool,
    slow_interval_s: float = 0.0,
    slow_bytes_per_s: float | None = None,
) -> None:
    """One WebSocket viewer. A slow one reads a message, then sleeps ``slow_interval_s`` (or as
    long as ``slow_bytes_per_s`` allows for that message), through a small receive buffer and a
    one-message client queue, so that back-pressure reaches the bridge."""
    slow = slow_interval_s > 0 or slow_bytes_per_s is not None
    sock = None
    if slow:
        parts = urllib.parse.urlsplit(url)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_RCVBUF)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (parts.hostname, parts.port or 80))
    try:
        ws = await connect(
            url,
            compression=None,
            max_size=None,
            max_queue=1 if slow else 16,
            sock=sock,
            close_timeout=1,
        )
    except Exception as e:
        stats.errors[_error_name(e)] += 1
        return
    try:
        while True:
            message = await ws.recv(decode=False)
            fields = parse_frame(message, binary and isinstance(message, bytes))
            if fields is None or fields.get("type") != "frame":
                code = orjson.loads(message).get("code", "unknown") if message else "empty"
                stats.errors[f"ws_error_{code}"] += 1
                continue
            stamp = fields.get("timestamp")
            stats.frame(
                int(fields.get("sequence", 0)),  # type: ignore[call-overload]
                len(message),
                _ms_since(float(stamp)) if isinstance(stamp, int | float) else None,
            )
            stats.dropped_reported = int(fields.get("dropped", 0))  # type: ignore[call-overload]
            if slow:
                pause = slow_interval_s
                if slow_bytes_per_s:
                    pause = max(pause, len(message) / slow_bytes_per_s)
                await asyncio.sleep(pause)
    except asyncio.CancelledError:
        raise
    except Exception as e:
        stats.errors[_error_name(e)] += 1
    finally:
        # The end of a test needs no closing handshake, and a slow viewer could not complete
        # one anyway (the bridge is blocked writing to it): drop the connection at once.
        ws.transport.abort()


async def subscriber(
    address: str, source_id: str, stats: ClientStats, *, slow_interval_s: float = 0.0
) -> None:
    """One gRPC Subscribe stream, on its own channel (so its own HTTP/2 flow control); a slow
    one pauses ``slow_interval_s`` after each frame."""
    async with grpc.aio.insecure_channel(address, options=LIVE_CHANNEL_OPTIONS) as channel:
        stub = dpb_grpc.DetectorServiceStub(channel)
        try:
            async for response in stub.Subscribe(dpb.SubscribeRequest(source_id=source_id)):
                if response.WhichOneof("event") != "frame":
                    continue
                frame = response.frame
                stats.frame(
                    frame.sequence, len(frame.jpeg), _ms_since(_ts_seconds(frame.capture_time))
                )
                stats.dropped_reported = frame.dropped
                if frame.HasField("detection_error"):
                    stats.errors[frame.detection_error.code] += 1
                if slow_interval_s:
                    await asyncio.sleep(slow_interval_s)
        except grpc.aio.AioRpcError as e:
            stats.errors[_error_name(e)] += 1


async def detect_stream(
    address: str, jpegs: list[bytes], fps: float, stats: ClientStats, name: str
) -> None:
    """One gRPC Detect stream sending ``fps`` frames a second (as a camera would: on a clock,
    not waiting for answers)."""

    async def requests() -> AsyncIterator[dpb.DetectRequest]:
        sequence = 0
        next_at = time.monotonic()
        while True:
            sequence += 1
            stamp = Timestamp()
            stamp.GetCurrentTime()
            yield dpb.DetectRequest(
                source_id=name,
                sequence=sequence,
                capture_time=stamp,
                jpeg=jpegs[sequence % len(jpegs)],
            )
            next_at += 1.0 / fps
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        stub = dpb_grpc.DetectorServiceStub(channel)
        try:
            async for response in stub.Detect(requests()):
                latency = _ms_since(_ts_seconds(response.capture_time))
                stats.frame(response.sequence, 0, latency)
                if response.HasField("error"):
                    stats.errors[response.error.code] += 1
        except grpc.aio.AioRpcError as e:
            stats.errors[_error_name(e)] += 1


async def _upload(stub: AnalyzerServiceAsyncStub, video: bytes) -> str:
    header = apb.UploadHeader(name="loadtest.mp4", size=len(video), start_analysis=True)
    response = await upload_protocol.send(
        stub.UploadVideo(None), header, upload_protocol.pieces(video)
    )
    job_id: str = response.job.id
    return job_id


async def _analyse(stub: AnalyzerServiceAsyncStub, video: bytes, stats: ClientStats) -> str:
    """Upload-to-complete; the job id when it completed, "" otherwise."""
    started = time.perf_counter()
    try:
        job_id = await _upload(stub, video)
        request = apb.StreamAnalysisEventsRequest(job_id=job_id)
        async for event in stub.StreamAnalysisEvents(request):
            kind = event.WhichOneof("event")
            if kind == "complete":
                stats.done += 1
                stats.latencies_ms.append((time.perf_counter() - started) * 1000)
                return job_id
            if kind == "error":
                stats.errors[event.error.code or "JOB_FAILED"] += 1
                return ""
    except grpc.aio.AioRpcError as e:
        stats.errors[_error_name(e)] += 1
    return ""


async def _chat(
    stub: AnalyzerServiceAsyncStub, request: apb.ChatRequest, stats: ClientStats
) -> None:
    started = time.perf_counter()
    first = True
    try:
        async for piece in stub.Chat(request):
            if first and (piece.delta or piece.done):
                stats.latencies_ms.append((time.perf_counter() - started) * 1000)
                first = False
            if piece.done:
                stats.done += 1
    except grpc.aio.AioRpcError as e:
        stats.errors[_error_name(e)] += 1


async def job_worker(
    address: str,
    video: bytes,
    question: str,
    analyses: ClientStats,
    chats: ClientStats,
    *,
    max_tokens: int = 32,
) -> None:
    """Upload, follow the analysis to its end, ask one question; again until cancelled.
    ``analyses`` gets the upload-to-complete time, ``chats`` the time to the first answer piece."""
    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        stub: AnalyzerServiceAsyncStub = apb_grpc.AnalyzerServiceStub(channel)
        while True:
            job_id = await _analyse(stub, video, analyses)
            if job_id:
                chat = apb.ChatRequest(job_id=job_id, question=question, max_tokens=max_tokens)
                await _chat(stub, chat, chats)
            else:
                await asyncio.sleep(0.2)  # a failing analyzer must not be hammered
