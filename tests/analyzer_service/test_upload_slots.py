"""The analyzer's upload slots over real gRPC: an upload that stops sending ends with
IDLE_TIMEOUT and frees its slot, and one client (its address, or the client a trusted proxy
names in ``x-vigil-client``) cannot hold more than its share of the slots."""

from __future__ import annotations

import asyncio
import io
import pathlib

import grpc
import pytest

from analyzer_service.server import AnalyzerServer
from analyzer_service.settings import AnalyzerSettings
from analyzer_service.upload_slots import peer_address
from tests.analyzer_service.helpers import StartServer, Stub, connect
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.analyzer.v1 import analyzer_service_pb2_grpc as pb_grpc
from vigil.core import upload_protocol
from vigil.core.errors import Overloaded
from vigil.sdk.analyzer import AsyncAnalyzerClient

pytestmark = pytest.mark.timeout(60)


async def started(
    start_server: StartServer, settings: AnalyzerSettings, **fields: object
) -> tuple[AnalyzerServer, Stub, grpc.aio.Channel]:
    server = await start_server(settings.model_copy(update=fields))
    channel = connect(server)
    return server, pb_grpc.AnalyzerServiceStub(channel), channel


def stored(server: AnalyzerServer) -> list[str]:
    videos: pathlib.Path = server.settings.videos_dir
    return sorted(p.name for p in videos.iterdir()) if videos.exists() else []


async def held(stub: Stub, client: str | None = None) -> upload_protocol.UploadCall:
    """An upload that was accepted, sent one small chunk and then stopped sending."""
    call = stub.UploadVideo(None, metadata=upload_protocol.client_metadata(client))
    await call.write(pb.UploadVideoRequest(header=pb.UploadHeader(name="s.mp4", size=10**6)))
    assert set(upload_protocol.ACCEPTED) <= set(await call.initial_metadata() or ())
    await call.write(pb.UploadVideoRequest(chunk=b"\x00" * 16))
    return call


async def ended(call: upload_protocol.UploadCall) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await asyncio.wait_for(call, 20)
    return error.value


async def upload(stub: Stub, data: bytes, client: str | None = None) -> pb.UploadVideoResponse:
    call = stub.UploadVideo(None, metadata=upload_protocol.client_metadata(client))
    header = pb.UploadHeader(name="clip.mp4", size=len(data))
    return await asyncio.wait_for(
        upload_protocol.send(call, header, upload_protocol.pieces(data)), 20
    )


async def test_a_stalled_upload_ends_with_idle_timeout_and_frees_its_slot(
    start_server: StartServer, settings: AnalyzerSettings, short_bytes: bytes
) -> None:
    server, stub, channel = await started(
        start_server, settings, upload_idle_timeout_s=1.0, max_concurrent_uploads=1
    )
    async with channel:
        # Stopped after a chunk, and never sent even a header: both end, with the reason.
        for nothing_sent in (False, True):
            call = stub.UploadVideo(None) if nothing_sent else await held(stub)
            error = await ended(call)
            assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert error.details() == (
                "IDLE_TIMEOUT: no data for 1 s: the upload idle timeout ended the upload"
            )
            assert stored(server) == []
        # The one slot is free again.
        response = await upload(stub, short_bytes)
        assert stored(server) == [response.video.id]


async def test_one_client_cannot_hold_more_than_its_share(
    start_server: StartServer, settings: AnalyzerSettings, short_bytes: bytes
) -> None:
    # 4 slots, 2 a client; this test's 127.0.0.1 is a trusted proxy (the default: loopback).
    server, stub, channel = await started(start_server, settings, max_concurrent_uploads=4)
    async with channel:
        stalled = [await held(stub, "browser-a") for _ in range(2)]
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await upload(stub, short_bytes, "browser-a")
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert refused.value.details() == (
            "OVERLOADED: this client already has 2 uploads in progress, its share of the 4 "
            "upload slots; try again when one has finished"
        )
        # Others still upload: another browser, and the proxy itself.
        await upload(stub, short_bytes, "browser-b")
        await upload(stub, short_bytes)
        # The SDK's asyncio client names the client the same way.
        async with AsyncAnalyzerClient(f"127.0.0.1:{server.port}") as client:
            with pytest.raises(Overloaded, match="its share of the 4 upload slots"):
                await client.upload_video(io.BytesIO(short_bytes), on_behalf_of="browser-a")
            await client.upload_video(io.BytesIO(short_bytes), on_behalf_of="browser-c")
        for call in stalled:
            call.cancel()


async def test_client_names_from_untrusted_peers_are_ignored(
    start_server: StartServer, settings: AnalyzerSettings, short_bytes: bytes
) -> None:
    _server, stub, channel = await started(
        start_server, settings, max_concurrent_uploads=4, trusted_proxies=[]
    )
    async with channel:
        stalled = [await held(stub, f"browser-{n}") for n in range(2)]
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await upload(stub, short_bytes, "browser-new")
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "its share of the 4 upload slots" in (refused.value.details() or "")
        for call in stalled:
            call.cancel()


@pytest.mark.parametrize(
    ("peer", "address"),
    [
        ("ipv4:10.0.0.1:5000", "10.0.0.1"),
        ("ipv6:[::1]:5000", "::1"),
        ("ipv6:[2001:db8::7]:443", "2001:db8::7"),
        ("unix:/run/vigil.sock", "unix:/run/vigil.sock"),
    ],
)
def test_peer_addresses(peer: str, address: str) -> None:
    assert peer_address(peer) == address
