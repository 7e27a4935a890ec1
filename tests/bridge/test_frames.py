"""The frame hub against a scripted detector over real gRPC: sharing, encoding, errors, retries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from bridge.frame_messages import (
    binary_message,
    encode_frame,
    parse_binary_message,
    parse_extras,
)
from bridge.frames import FrameHub, Viewer
from vigil.common.v1 import common_pb2 as cpb
from vigil.core.backoff import Backoff
from vigil.core.errors import InvalidInput
from vigil.core.queues import QueueClosed
from vigil.detector.v1 import detector_service_pb2 as dpb
from vigil.sdk import AsyncDetectorClient

pytestmark = pytest.mark.timeout(15)


@pytest.fixture
async def hub(detector_client: AsyncDetectorClient) -> AsyncIterator[FrameHub]:
    frames = FrameHub(detector_client, queue_size=2, backoff=lambda: Backoff(0.05, 0.2))
    yield frames
    await frames.close()


async def next_message(viewer: Viewer, within: float = 3.0) -> dict[str, Any]:
    text = await asyncio.wait_for(viewer.queue.get(), within)
    message: dict[str, Any] = orjson.loads(text)
    return message


async def next_of(viewer: Viewer, kind: str, within: float = 3.0) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            message = await next_message(viewer)
            if message["type"] == kind:
                return message


async def wait_until(predicate: Any, within: float = 3.0) -> None:
    async with asyncio.timeout(within):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.01)


async def test_viewers_share_one_stream_and_one_encoding(hub: FrameHub, fake_detector: Any) -> None:
    with hub.watch("cam") as a, hub.watch("cam") as b:
        await next_of(a, "frame")
        await next_of(b, "frame")
        await asyncio.sleep(0.1)
        # Both queues now hold the last frames published; compare the very objects.
        a.queue.close()
        b.queue.close()
        texts_a = [await a.queue.get() for _ in range(len(a.queue))]
        texts_b = [await b.queue.get() for _ in range(len(b.queue))]
        shared = {id(t) for t in texts_a} & {id(t) for t in texts_b}
        assert shared, "the same frame must be one str object for every viewer"
        assert fake_detector.active == 1
        assert fake_detector.calls == 1
        assert hub.sources() == {"cam": 2}


async def test_last_viewer_leaving_ends_the_stream(hub: FrameHub, fake_detector: Any) -> None:
    with hub.watch("cam") as viewer:
        await next_of(viewer, "frame")
        assert fake_detector.active == 1
    await wait_until(lambda: fake_detector.active == 0)
    assert hub.sources() == {}


async def test_default_message_has_exactly_the_seed_keys(hub: FrameHub) -> None:
    with hub.watch("cam") as viewer:
        frame = await next_of(viewer, "frame")
    assert set(frame) == {"type", "data", "timestamp"}
    assert isinstance(frame["timestamp"], float)


async def test_extras_add_fields_and_per_viewer_drops(hub: FrameHub) -> None:
    extras = parse_extras("sequence,dropped,latency,detections")
    with hub.watch("cam", extras) as slow:
        await asyncio.sleep(0.3)  # ~30 frames into a queue of 2
        frame = await next_of(slow, "frame")
    assert set(frame) == {
        "type", "data", "timestamp", "sequence", "dropped", "latency_ms", "inference_ms",
        "width", "height", "detections",
    }  # fmt: skip
    assert frame["dropped"] > 5
    assert frame["inference_ms"] == 1.5
    assert (frame["width"], frame["height"], frame["detections"]) == (64, 48, [])
    assert 0 <= frame["latency_ms"] < 1000


def test_encode_frame_detections() -> None:
    stamp = Timestamp(seconds=1_700_000_000, nanos=250_000_000)
    detection = cpb.Detection(
        box=cpb.BoundingBox(x_min=1, y_min=2, x_max=30, y_max=40),
        class_name="knife",
        class_id=43,
        confidence=0.5,
        model="test",
        is_weapon=True,
        track_id=7,
    )
    frame = dpb.Frame(sequence=9, capture_time=stamp, detections=[detection], width=64, height=48)
    message = orjson.loads(encode_frame(frame, "QUJD", frozenset({"detections"}), 0.0))
    assert message["timestamp"] == 1_700_000_000.25
    assert message["data"] == "QUJD"
    assert message["detections"] == [
        {
            "class_name": "knife",
            "class_id": 43,
            "confidence": 0.5,
            "box": {"x_min": 1.0, "y_min": 2.0, "x_max": 30.0, "y_max": 40.0},
            "is_weapon": True,
            "model": "test",
            "track_id": 7,
        }
    ]


def test_unknown_extras_are_refused() -> None:
    assert parse_extras(None) == frozenset()
    assert parse_extras("sequence, latency") == {"sequence", "latency"}
    with pytest.raises(InvalidInput, match="boxes"):
        parse_extras("sequence,boxes")


async def test_unknown_source_gets_an_error_and_a_policy_close(hub: FrameHub) -> None:
    with hub.watch("nope") as viewer:
        error = await next_message(viewer)
        with pytest.raises(QueueClosed):
            await asyncio.wait_for(viewer.queue.get(), 3)
    assert error == {"type": "error", "code": "NOT_FOUND", "message": "no source 'nope'"}
    assert viewer.close_code == 1008
    assert hub.sources() == {}


def test_bad_source_ids_never_reach_the_detector(hub: FrameHub) -> None:
    with pytest.raises(InvalidInput), hub.watch("../etc"):
        pass


async def test_outage_sends_one_error_then_frames_resume(hub: FrameHub, fake_detector: Any) -> None:
    with hub.watch("cam") as viewer:
        await next_of(viewer, "frame")
        await fake_detector.stop()
        error = await next_of(viewer, "error")
        assert error["code"] == "UNAVAILABLE"
        # Several retries fail while the detector is down; the viewer hears about it once.
        await asyncio.sleep(0.5)
        with hub.watch("cam") as late:
            assert (await next_message(late))["type"] == "error"
        messages = [orjson.loads(await viewer.queue.get()) for _ in range(len(viewer.queue))]
        assert [m for m in messages if m["type"] == "error"] == []
        await fake_detector.start()  # same port
        frame = await next_of(viewer, "frame", within=5)
        assert set(frame) == {"type", "data", "timestamp"}


async def test_binary_viewers_share_one_packed_message(hub: FrameHub) -> None:
    with hub.watch("cam", binary=True) as a, hub.watch("cam", binary=True) as b:
        first_a, first_b = (
            await asyncio.wait_for(a.queue.get(), 3),
            await asyncio.wait_for(b.queue.get(), 3),
        )
        # The source's state message may come first; wait for frames.
        while not isinstance(first_a, bytes):
            first_a = await asyncio.wait_for(a.queue.get(), 3)
        while not isinstance(first_b, bytes):
            first_b = await asyncio.wait_for(b.queue.get(), 3)
        await asyncio.sleep(0.05)
        a.queue.close()
        b.queue.close()
        rest_a = [await a.queue.get() for _ in range(len(a.queue))]
        rest_b = [await b.queue.get() for _ in range(len(b.queue))]
    assert {id(m) for m in rest_a} & {id(m) for m in rest_b}, "one bytes object for all viewers"
    header, jpeg = parse_binary_message(first_a)
    assert header["type"] == "frame"
    assert set(header) == {"type", "timestamp", "sequence"}
    assert jpeg.startswith(b"\xff\xd8 fake jpeg ")
    assert jpeg == b"\xff\xd8 fake jpeg %d \xff\xd9" % header["sequence"]


def test_binary_layout() -> None:
    message = binary_message({"type": "frame", "sequence": 7}, b"JPEG")
    assert message[:4] == len(b'{"type":"frame","sequence":7}').to_bytes(4, "big")
    assert parse_binary_message(message) == ({"type": "frame", "sequence": 7}, b"JPEG")
