"""What a gateway (the bridge) and a service calling another (the analyzer) need of the SDK:
health checks, connecting on demand, uploads relayed as they arrive, a subscription that waits
for its service, and the channel options a client opens with."""

from __future__ import annotations

import asyncio
import pathlib
import socket
from collections.abc import AsyncIterator

import pytest

from tests.vigil.conftest import StartDetector, free_port
from vigil.core.errors import InvalidInput, NotFound, Unavailable
from vigil.sdk import (
    AnalysisOptions,
    AsyncAnalyzerClient,
    AsyncDetectorClient,
    ClientOptions,
    DetectorClient,
    Frame,
    Source,
)
from vigil.sdk.options import channel_options

pytestmark = pytest.mark.timeout(30)


def test_a_running_service_is_serving(detector_address: str) -> None:
    with DetectorClient(detector_address) as client:
        assert client.health() == "SERVING"
        # The whole server, named by the empty service name.
        assert client.health("") == "SERVING"


async def test_async_health_names_this_clients_service(analyzer_address: str) -> None:
    async with AsyncAnalyzerClient(analyzer_address) as client:
        assert await client.health() == "SERVING"
        # The analyzer's server does not host the detector's service.
        with pytest.raises(NotFound):
            await client.health("vigil.detector.v1.DetectorService")


def test_health_of_a_service_that_is_not_hosted_is_not_found(detector_address: str) -> None:
    with DetectorClient(detector_address) as client, pytest.raises(NotFound):
        client.health("no.such.Service")


async def test_connect_returns_once_the_channel_is_ready(detector_address: str) -> None:
    async with AsyncDetectorClient(detector_address) as client:
        await client.connect(10)
        assert [s.id for s in await client.list_sources()] == ["default"]


async def test_connect_to_a_refused_address_fails_without_waiting_out_its_timeout() -> None:
    # A port held bound but never listening refuses connections.
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{held.getsockname()[1]}"
        async with AsyncDetectorClient(address) as client:
            # The test's own timeout (30 s) is far below this one: only a fast refusal passes.
            with pytest.raises(Unavailable, match=r"the detector at .* refused the connection"):
                await client.connect(3600)


def test_channel_options_carry_the_clients_keepalive_and_reconnect_policy() -> None:
    options = ClientOptions(
        "127.0.0.1:1",
        keepalive_time_s=6,
        keepalive_timeout_s=4,
        reconnect_initial_s=0.5,
        reconnect_max_s=3,
    )
    plain = dict(channel_options(options, "vigil.detector.v1.DetectorService", ()))
    assert plain["grpc.keepalive_time_ms"] == 6000
    assert plain["grpc.keepalive_timeout_ms"] == 4000
    assert plain["grpc.http2.ping_timeout_ms"] == 4000
    assert plain["grpc.initial_reconnect_backoff_ms"] == 500
    assert plain["grpc.max_reconnect_backoff_ms"] == 3000
    assert "grpc.http2.lookahead_bytes" not in plain
    live = dict(channel_options(options, "vigil.detector.v1.DetectorService", (), live=True))
    assert live["grpc.http2.lookahead_bytes"] == 64 * 1024
    assert live["grpc.keepalive_time_ms"] == 6000


async def pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


async def test_an_upload_relayed_as_it_arrives(analyzer_address: str, video: pathlib.Path) -> None:
    data = await asyncio.to_thread(video.read_bytes)
    async with AsyncAnalyzerClient(analyzer_address) as client:
        # The size is unknown until the end (a browser's form): the header says 0.
        unsized = await client.upload_chunks(pieces(data, 4096), name="relayed.mp4")
        sized = await client.upload_chunks(
            pieces(data, 4096), name="sized.mp4", size=len(data), start_analysis=True
        )
        assert (unsized.video.name, unsized.video.size, unsized.job) == (
            "relayed.mp4",
            len(data),
            None,
        )
        assert sized.video.sha256 == unsized.video.sha256
        assert sized.job is not None
        assert sized.job.video is not None
        assert sized.job.video.id == sized.video.id


async def test_a_refused_relayed_upload_reads_no_chunk(analyzer_address: str) -> None:
    read = 0

    async def counted() -> AsyncIterator[bytes]:
        nonlocal read
        read += 1
        yield b"\0" * 1024

    options = AnalysisOptions(max_frames=100_000)
    async with AsyncAnalyzerClient(analyzer_address) as client:
        with pytest.raises(InvalidInput, match="max_frames 100000 is over the limit"):
            await client.upload_chunks(
                counted(), name="x.mp4", size=1024, start_analysis=True, options=options
            )
    assert read == 0


async def test_a_subscription_may_wait_for_its_service(start_detector: StartDetector) -> None:
    port = free_port()
    async with AsyncDetectorClient(f"127.0.0.1:{port}") as client:
        with pytest.raises(Unavailable):
            async for _ in client.subscribe("default"):
                pass
        waiting = client.subscribe("default", wait_for_ready=True)
        first = asyncio.ensure_future(anext(waiting))
        await asyncio.sleep(0.3)
        assert not first.done()
        await asyncio.to_thread(start_detector, port=port)
        source = await asyncio.wait_for(first, 10)
        assert isinstance(source, Source)
        assert source.id == "default"
        async with asyncio.timeout(10):
            # State changes (starting, live) may come before the first frame.
            while not isinstance(item := await anext(waiting), Frame):
                assert isinstance(item, Source)
        assert item.source_id == "default"
        waiting.cancel()
