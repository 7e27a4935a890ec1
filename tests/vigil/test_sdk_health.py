"""The SDK's health checks, connecting on demand, and the channel options a client opens with."""

from __future__ import annotations

import socket

import pytest

from vigil.core.errors import NotFound, Unavailable
from vigil.sdk import AsyncAnalyzerClient, AsyncDetectorClient, ClientOptions, DetectorClient
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
            with pytest.raises(Unavailable, match="refused the connection"):
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
