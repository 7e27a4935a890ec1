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
