"""A camera's password or token never leaves the detector: every reply holds the masked URI."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator

import pytest

from detector_service import backends
from detector_service.batcher import InferenceBatcher
from detector_service.capture import CaptureError, FrameReader
from detector_service.pipeline import LiveSource
from detector_service.server import DetectorServer
from detector_service.settings import DetectorSettings
from tests.detector_service import blackhole
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc

PASSWORD = f"canary-pw-{uuid.uuid4().hex}"
TOKEN = f"canary-qs-{uuid.uuid4().hex}"


@pytest.fixture
def garbage_server() -> Iterator[int]:
    with blackhole.garbage_server() as port:
        yield port


async def until_error(stub: pb_grpc.DetectorServiceAsyncStub, source_id: str) -> pb.Source:
    """Subscribe (so capture starts) until the source reports its failed open."""
    call = stub.Subscribe(pb.SubscribeRequest(source_id=source_id, omit_jpeg=True))
    try:
        async with asyncio.timeout(60):
            async for message in call:
                if message.HasField("source") and message.source.last_error:
                    return message.source
    finally:
        call.cancel()
    raise AssertionError("the stream ended")


async def test_stream_credentials_are_masked_in_every_reply(
    detector: DetectorServer,
    detector_stub: pb_grpc.DetectorServiceAsyncStub,
    garbage_server: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    uris = {
        "userinfo": f"rtsp://admin:{PASSWORD}@127.0.0.1:{garbage_server}/live",
        "query": f"http://127.0.0.1:{garbage_server}/v.mjpg?user=u&password={PASSWORD}&token={TOKEN}",
    }
    replies: list[object] = []
    for source_id, uri in uris.items():
        spec = pb.SourceSpec(id=source_id, kind=pb.SOURCE_KIND_STREAM, uri=uri)
        added = await detector_stub.AddSource(pb.AddSourceRequest(source=spec))
        replies += [added, await until_error(detector_stub, source_id)]
        replies.append(await detector_stub.GetSource(pb.GetSourceRequest(source_id=source_id)))
    listed = await detector_stub.ListSources(pb.ListSourcesRequest())
    replies.append(listed)
    by_id = {s.spec.id: s for s in listed.sources}
    assert by_id["userinfo"].spec.uri == f"rtsp://admin:***@127.0.0.1:{garbage_server}/live"
    assert by_id["query"].spec.uri.endswith("?user=u&password=***&token=***")
    assert all(by_id[i].last_error for i in uris)  # the capture really tried, and failed
    text = "\n".join(str(r) for r in replies) + caplog.text
    assert PASSWORD not in text
    assert TOKEN not in text
    # The capture itself was given the real URI: only it may see it.
    assert detector.registry.get("userinfo").uri.reveal() == uris["userinfo"]


def quoting_reader(spec: pb.SourceSpec, fps: float) -> FrameReader:
    """Fails as PyAV does, with the URL it was given (credentials included) in the message."""
    raise CaptureError(f"Server returned 401 Unauthorized: '{spec.uri}'")


async def test_an_error_quoting_the_real_uri_is_redacted_everywhere(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    uri = f"rtsp://admin:{PASSWORD}@127.0.0.1:1/live?token={TOKEN}"
    spec = pb.SourceSpec(id="cam", kind=pb.SOURCE_KIND_STREAM, uri=uri)
    settings = DetectorSettings(backend="none", linger_s=0)
    batcher = InferenceBatcher(backends.create(settings))
    loop = asyncio.get_running_loop()
    source = LiveSource(spec, settings, batcher, loop, reader_factory=quoting_reader)
    sub = source.subscribe(omit_jpeg=True)
    states: list[pb.Source] = []
    try:
        async with asyncio.timeout(30):
            while "401" not in source.last_error:
                states.append((await sub.next()).source)
    finally:
        source.unsubscribe(sub)
        source.close()
        await asyncio.to_thread(source.join, 10)
        batcher.close()
    assert source.last_error == (
        "Server returned 401 Unauthorized: 'rtsp://admin:***@127.0.0.1:1/live?token=***'"
    )
    seen = f"{states}{source.snapshot()}{source.spec}{caplog.text}"
    assert "401 Unauthorized" in caplog.text
    assert PASSWORD not in seen
    assert TOKEN not in seen
