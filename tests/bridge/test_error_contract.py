"""One error contract on every surface, against real services: gRPC (rich status details), HTTP
(status, body, ``Retry-After``), the video WebSocket (close code) and Socket.IO (error events). Each
assertion reads the expected values from ``vigil.core.errors.ERRORS``, the one table."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import orjson
import pytest
from google.rpc import error_details_pb2
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from analyzer_service.server import AnalyzerServer
from bridge.errors import _HTTP_CODES
from tests.bridge.session_clients import session
from vigil.analyzer.v1 import analyzer_service_pb2 as apb
from vigil.analyzer.v1 import analyzer_service_pb2_grpc as apb_grpc
from vigil.core.errors import DOMAIN, ERRORS, from_rpc_error, status_of
from vigil.core.upload_protocol import UploadCall
from vigil.detector.v1 import detector_service_pb2 as dpb
from vigil.detector.v1 import detector_service_pb2_grpc as dpb_grpc

pytestmark = pytest.mark.timeout(60)


async def failed(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await asyncio.wait_for(call, 20)
    return error.value


def details(error: grpc.aio.AioRpcError) -> dict[str, Any]:
    """The rich details of a failed call, by kind."""
    status = status_of(error)
    assert status is not None, error
    found: dict[str, Any] = {}
    for item in status.details:
        for kind in (
            error_details_pb2.ErrorInfo,
            error_details_pb2.RetryInfo,
            error_details_pb2.BadRequest,
        ):
            message = kind()
            if item.Unpack(message):
                found[kind.__name__] = message
    return found


def check_grpc(error: grpc.aio.AioRpcError, code: str) -> None:
    row = ERRORS[code]
    assert error.code() == row.status
    found = details(error)
    info = found["ErrorInfo"]
    assert (info.reason, info.domain) == (code, DOMAIN)
    if row.retryable:
        assert found["RetryInfo"].retry_delay.seconds == row.retry_after_s
    else:
        assert "RetryInfo" not in found
    back = from_rpc_error(error)
    assert (back.code, back.retryable) == (code, row.retryable)


async def hold_the_only_upload_slot(stub: apb_grpc.AnalyzerServiceAsyncStub) -> UploadCall:
    call = stub.UploadVideo(None)
    await call.write(apb.UploadVideoRequest(header=apb.UploadHeader(name="s.mp4", size=10**6)))
    await call.initial_metadata()
    await call.write(apb.UploadVideoRequest(chunk=b"\x00" * 16))
    return call


@pytest.fixture
async def one_slot(start_analyzer: Any) -> AsyncIterator[tuple[AnalyzerServer, Any]]:
    """An analyzer with one upload slot, held by an upload that stopped sending."""
    server = await start_analyzer(max_concurrent_uploads=1)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        held = await hold_the_only_upload_slot(apb_grpc.AnalyzerServiceStub(channel))
        yield server, channel
        held.cancel()


async def test_grpc_errors_carry_the_tables_rich_status(
    detector: Any, one_slot: tuple[AnalyzerServer, Any], start_analyzer: Any
) -> None:
    async with grpc.aio.insecure_channel(detector.address) as channel:
        stub = dpb_grpc.DetectorServiceStub(channel)
        check_grpc(
            await failed(stub.GetSource(dpb.GetSourceRequest(source_id="nope"))), "NOT_FOUND"
        )
        # A streaming method, refused before its first message.
        stream = stub.Subscribe(dpb.SubscribeRequest(source_id="nope"))
        check_grpc(await failed(stream.read()), "NOT_FOUND")
    # Retryable: a second upload while the only slot is taken.
    _server, channel = one_slot
    stub_a: apb_grpc.AnalyzerServiceAsyncStub = apb_grpc.AnalyzerServiceStub(channel)
    call = stub_a.UploadVideo(None)
    # The refusal can race the header's write: the write then fails locally (INTERNAL from
    # gRPC core) and the call's own status carries the server's answer, as the SDK reads it.
    with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
        await call.write(apb.UploadVideoRequest(header=apb.UploadHeader(name="b.mp4", size=10)))
    check_grpc(await failed(call), "OVERLOADED")
    # Refused by the token check, before the method runs.
    guarded = await start_analyzer(token="s3cret")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{guarded.port}") as other:
        refused = apb_grpc.AnalyzerServiceStub(other).GetJob(apb.GetJobRequest(job_id="x"))
        check_grpc(await failed(refused), "UNAUTHENTICATED")


def check_http(response: httpx.Response, code: str) -> None:
    row = ERRORS[code]
    assert response.status_code == row.http, response.text
    body = response.json()
    assert body["code"] == code
    assert body.get("retryable", False) == row.retryable
    expected = None if row.retry_after_s is None else str(row.retry_after_s)
    assert response.headers.get("retry-after") == expected


async def test_http_errors_follow_the_table(
    start_bridge: Any, one_slot: tuple[AnalyzerServer, Any], detector: Any
) -> None:
    server, _ = one_slot
    bridge = await start_bridge(
        analyzer_address=f"127.0.0.1:{server.port}", detector_address=detector.address
    )
    async with httpx.AsyncClient(base_url=bridge.http, timeout=20) as client:
        check_http(await client.get("/api/analyses/nope"), "NOT_FOUND")
        check_http(await client.delete("/api/sources/nope"), "NOT_FOUND")
        check_http(await client.get("/api/sources/nope"), "METHOD_NOT_ALLOWED")
        check_http(await client.get("/api/analyses", params={"state": "x"}), "INVALID_ARGUMENT")
        upload = await client.post("/api/videos", params={"name": "b.mp4"}, content=b"\x00" * 64)
        check_http(upload, "OVERLOADED")
    # A backend that is not there at all (gRPC's own error, told in the bridge's words).
    away = await start_bridge()
    async with httpx.AsyncClient(base_url=away.http, timeout=20) as client:
        check_http(await client.get("/api/analyses/nope"), "UNAVAILABLE")


def test_the_bridges_own_http_codes_are_in_the_table() -> None:
    # Except 429's, which no handler of the bridge raises itself (the analyzer's OVERLOADED is).
    assert set(_HTTP_CODES.values()) - set(ERRORS) == {"TOO_MANY_REQUESTS"}
    for status, code in _HTTP_CODES.items():
        assert code not in ERRORS or ERRORS[code].http == status


async def closed_with(url: str) -> tuple[dict[str, Any], int]:
    async with connect(url) as ws:
        message = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code is not None
        return message, ws.close_code


async def test_websocket_close_codes_follow_the_table(start_bridge: Any, detector: Any) -> None:
    bridge = await start_bridge(detector_address=detector.address)
    for path, code in [
        ("/ws/video-stream/nope", "NOT_FOUND"),
        ("/ws/video-stream/cam?format=xml", "INVALID_ARGUMENT"),
    ]:
        message, close_code = await closed_with(f"{bridge.ws}{path}")
        assert (message["type"], message["code"]) == ("error", code)
        assert close_code == ERRORS[code].ws_close


async def test_socketio_error_events_follow_the_table(start_bridge: Any, analyzer: Any) -> None:
    bridge = await start_bridge(analyzer_address=f"127.0.0.1:{analyzer.port}")
    away = await start_bridge()  # its analyzer address has nothing behind it
    for target, code in [(bridge, "NOT_FOUND"), (away, "UNAVAILABLE")]:
        async with session(target, "sio") as conn:
            await conn.send("join_session", {"job_id": "nope"})
            name, data = await conn.next_event()
            assert name == "session_joined"
            name, data = await conn.next_event()
            assert (name, data["code"]) == ("error", code)
            assert data.get("retryable", False) == ERRORS[code].retryable
    async with session(bridge, "sio") as conn:
        await conn.send("chat", {"question": "why?"})
        name, data = await conn.next_event()
        assert (name, data["code"]) == ("error", "NO_SESSION")
        assert data.get("retryable", False) == ERRORS["NO_SESSION"].retryable
