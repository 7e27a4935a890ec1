"""Subscribing to the built-in test-pattern source over gRPC."""

from __future__ import annotations

import itertools

import cv2
import grpc
import numpy as np
import pytest

from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc


async def test_test_pattern_frames_arrive_live(
    detector_stub: pb_grpc.DetectorServiceAsyncStub,
) -> None:
    states: list[int] = []
    frames: list[pb.Frame] = []
    async for message in detector_stub.Subscribe(pb.SubscribeRequest(source_id="default")):
        if message.HasField("source"):
            states.append(message.source.state)
        else:
            frames.append(message.frame)
        if len(frames) == 10:
            break

    assert states[0] in (pb.SOURCE_STATE_STARTING, pb.SOURCE_STATE_LIVE)
    assert pb.SOURCE_STATE_LIVE in states
    assert {f.source_id for f in frames} == {"default"}
    sequences = [f.sequence for f in frames]
    assert sequences == sorted(set(sequences))
    times = [f.capture_time.ToNanoseconds() for f in frames]
    assert all(b > a for a, b in itertools.pairwise(times))
    image = cv2.imdecode(np.frombuffer(frames[-1].jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    assert image.shape == (720, 1280, 3)
    # Published at no more than 15 fps (with a little slack for scheduling jitter).
    span_s = (times[-1] - times[0]) / 1e9
    assert span_s >= 9 / 15 * 0.9


async def test_unknown_source_is_not_found(detector_stub: pb_grpc.DetectorServiceAsyncStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in detector_stub.Subscribe(pb.SubscribeRequest(source_id="nope")):
            pass
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "nope" in (info.value.details() or "")


async def test_sources_are_listed_with_state(
    detector_stub: pb_grpc.DetectorServiceAsyncStub,
) -> None:
    listed = await detector_stub.ListSources(pb.ListSourcesRequest())
    (source,) = listed.sources
    assert source.spec.id == "default"
    assert source.spec.kind == pb.SOURCE_KIND_TEST_PATTERN
    assert source.state == pb.SOURCE_STATE_IDLE


def quantisation_tables(jpeg: bytes) -> bytes:
    """The payloads of a JPEG's DQT segments: what its quality setting decides."""
    tables, i = b"", 2
    while i + 4 <= len(jpeg) and jpeg[i] == 0xFF and jpeg[i + 1] != 0xDA:  # up to start of scan
        length = int.from_bytes(jpeg[i + 2 : i + 4], "big")
        if jpeg[i + 1] == 0xDB:
            tables += jpeg[i + 4 : i + 2 + length]
        i += 2 + length
    return tables


def reference_tables(image: np.ndarray, quality: int) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return quantisation_tables(data.tobytes())


async def test_published_frames_are_jpeg_quality_80_by_default(
    detector_stub: pb_grpc.DetectorServiceAsyncStub,
) -> None:
    async for message in detector_stub.Subscribe(pb.SubscribeRequest(source_id="default")):
        if message.HasField("frame"):
            jpeg = message.frame.jpeg
            break
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    tables = quantisation_tables(jpeg)
    assert len(tables) == 2 * 65  # luma and chroma, 8-bit: one id byte and 64 entries each
    assert tables == reference_tables(image, 80)
    # The comparison tells neighbouring qualities apart.
    assert tables != reference_tables(image, 75)
    assert tables != reference_tables(image, 85)
