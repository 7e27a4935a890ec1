"""How an asyncio client sends ``AnalyzerService.UploadVideo``: header, answer, then chunks.

The analyzer answers a header it accepts with the initial metadata ``vigil-upload: accepted``
before it reads any chunk, and a header it refuses (too large, bad options, no disk space,
overloaded) with its status alone. grpcio's asyncio client turns a status that arrives while one
of its writes is under way into INTERNAL "Internal error from Core" (grpc/grpc#36066, still open
in grpcio 1.85), so a client that streams chunks straight after the header would see a 413 or a
bad option as an internal error. Waiting for the answer to the header keeps the refusal intact.
The blocking client does not have the bug and needs no handshake.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator

import grpc

from vigil.analyzer.v1 import analyzer_service_pb2 as pb

# The initial metadata the analyzer sends once it has accepted an upload's header.
ACCEPTED: tuple[tuple[str, str], ...] = (("vigil-upload", "accepted"),)

# The metadata key naming the client an upload is for, when it comes through a proxy (the
# bridge): the analyzer counts its per-client share of upload slots by it, and believes it only
# from its trusted proxies (``VIGIL_ANALYZER_TRUSTED_PROXIES``).
CLIENT_KEY = "x-vigil-client"

UploadCall = grpc.aio.StreamUnaryCall[pb.UploadVideoRequest, pb.UploadVideoResponse]

# What the contract recommends: large enough to keep the stream busy, far below message limits.
CHUNK_BYTES = 1024 * 1024


def client_metadata(client: str | None) -> tuple[tuple[str, str], ...]:
    """The metadata of an ``UploadVideo`` call made on behalf of ``client`` (None: ourselves)."""
    return () if client is None else ((CLIENT_KEY, client),)


async def send(
    call: UploadCall, header: pb.UploadHeader, chunks: AsyncIterable[bytes]
) -> pb.UploadVideoResponse:
    """Upload on ``call`` (an ``UploadVideo`` call started without a request iterator).

    Returns the response, or raises the call's ``AioRpcError`` with the analyzer's reason when it
    refused the upload. An exception from ``chunks`` (the upload's own source failing) cancels
    the call and propagates.
    """
    try:
        await _write(call, header, chunks)
    except BaseException:
        call.cancel()
        raise
    return await call


async def _write(call: UploadCall, header: pb.UploadHeader, chunks: AsyncIterable[bytes]) -> None:
    if not await _written(call, pb.UploadVideoRequest(header=header)):
        return
    if not set(ACCEPTED) <= set(await call.initial_metadata() or ()):
        return  # refused: the status says why
    async for chunk in chunks:
        if not await _written(call, pb.UploadVideoRequest(chunk=chunk)):
            return
    if not call.done():
        await call.done_writing()


async def _written(call: UploadCall, message: pb.UploadVideoRequest) -> bool:
    """Whether ``message`` went out; False when the call has ended (its status tells why)."""
    if call.done():
        return False
    try:
        await call.write(message)
    except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
        return False
    return True


async def pieces(data: bytes, size: int = CHUNK_BYTES) -> AsyncIterator[bytes]:
    """``data`` in chunks of ``size`` bytes, for an upload already in memory."""
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]
