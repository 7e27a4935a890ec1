"""The load clients: each runs until cancelled and records what it saw in its ``ClientStats``.

Latency is capture time (stamped by whoever made the frame, on this machine's clock) to receipt.
Errors are counted by gRPC status name, ``ws_close_<code>``, ``ws_error_<code>`` (an error message
from the bridge) or the service's own error code carried in a response. The gRPC clients are the
SDK's (``vigil.sdk``), so a load test calls the services as every other client does.
"""

from __future__ import annotations

import asyncio
import io
import socket
import time
import urllib.parse
from collections.abc import AsyncIterator

import orjson
import websockets
from websockets.asyncio.client import connect

from vigil.core.errors import VigilError
from vigil.loadgen.stats import ClientStats
from vigil.sdk import AsyncAnalyzerClient, AsyncDetectorClient, DetectFrame, Frame

# A slow viewer's kernel receive buffer: small, so the bridge feels the push-back within a frame.
SLOW_RCVBUF = 16 * 1024
_TAIL = b'","timestamp":'


def _ms_since(seconds: float) -> float:
    return (time.time() - seconds) * 1000.0


def parse_frame(message: bytes, binary: bool) -> dict[str, object] | None:
    """A frame message's small fields (timestamp, sequence, dropped), without touching the JPEG;
    None for a non-frame message. JSON frames keep the picture first, so the rest is a short
    tail (the bridge's layout, which the bare benchmark server copies)."""
    # A binary viewer's problems still come as JSON text messages (read here as bytes too); a
    # binary frame starts with its header's length, whose first byte is 0.
    if binary and not message.startswith(b"{"):
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
    if isinstance(error, VigilError):
        return error.status.name
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
    """One gRPC Subscribe stream, on its own client (so its own HTTP/2 flow control); a slow
    one pauses ``slow_interval_s`` after each frame."""
    async with AsyncDetectorClient(address) as detector:
        try:
            async for item in detector.subscribe(source_id):
                if not isinstance(item, Frame):
                    continue
                stats.frame(item.sequence, len(item.jpeg), _ms_since(item.timestamp))
                stats.dropped_reported = item.dropped
                if item.error is not None:
                    stats.errors[item.error.code] += 1
                if slow_interval_s:
                    await asyncio.sleep(slow_interval_s)
        except VigilError as e:
            stats.errors[_error_name(e)] += 1


async def detect_stream(
    address: str, jpegs: list[bytes], fps: float, stats: ClientStats, name: str
) -> None:
    """One gRPC Detect stream sending ``fps`` frames a second (as a camera would: on a clock,
    not waiting for answers)."""

    async def frames() -> AsyncIterator[DetectFrame]:
        sequence = 0
        next_at = time.monotonic()
        while True:
            sequence += 1
            # No timestamp: the SDK stamps the capture time as it sends the frame.
            yield DetectFrame(jpegs[sequence % len(jpegs)], sequence=sequence, source_id=name)
            next_at += 1.0 / fps
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async with AsyncDetectorClient(address) as detector:
        try:
            async for result in detector.detect(frames()):
                stats.frame(result.sequence, 0, _ms_since(result.timestamp))
                if result.error is not None:
                    stats.errors[result.error.code] += 1
        except VigilError as e:
            stats.errors[_error_name(e)] += 1


async def _analyse(analyzer: AsyncAnalyzerClient, video: bytes, stats: ClientStats) -> str:
    """Upload-to-complete; the job id when it completed, "" otherwise."""
    started = time.perf_counter()
    try:
        uploaded = await analyzer.upload_video(
            io.BytesIO(video), name="loadtest.mp4", size=len(video), start_analysis=True
        )
        job_id = uploaded.job.id if uploaded.job is not None else ""
        async for event in analyzer.events(job_id):
            if event.kind == "complete":
                stats.done += 1
                stats.latencies_ms.append((time.perf_counter() - started) * 1000)
                return job_id
            if event.kind == "error":
                stats.errors[(event.error.code if event.error else "") or "JOB_FAILED"] += 1
                return ""
    except VigilError as e:
        stats.errors[_error_name(e)] += 1
    return ""


async def _chat(
    analyzer: AsyncAnalyzerClient,
    job_id: str,
    question: str,
    max_tokens: int,
    stats: ClientStats,
) -> None:
    started = time.perf_counter()
    first = True
    try:
        async for piece in analyzer.chat(job_id, question, max_tokens=max_tokens):
            if first and (piece.delta or piece.done):
                stats.latencies_ms.append((time.perf_counter() - started) * 1000)
                first = False
            if piece.done:
                stats.done += 1
    except VigilError as e:
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
    async with AsyncAnalyzerClient(address) as analyzer:
        while True:
            job_id = await _analyse(analyzer, video, analyses)
            if job_id:
                await _chat(analyzer, job_id, question, max_tokens, chats)
            else:
                await asyncio.sleep(0.2)  # a failing analyzer must not be hammered
