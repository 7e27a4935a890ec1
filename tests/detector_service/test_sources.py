"""Many sources, many viewers: each source and each subscriber independent of the others."""

from __future__ import annotations

import asyncio
import itertools
import pathlib
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import cv2
import grpc
import numpy as np
import pytest

from tests.detector_service.mjpeg import MjpegCamera
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc

if TYPE_CHECKING:  # the async stub type exists only in the .pyi stubs
    Stub = pb_grpc.DetectorServiceAsyncStub


def pattern(source_id: str, fps: float = 15) -> pb.SourceSpec:
    return pb.SourceSpec(id=source_id, kind=pb.SOURCE_KIND_TEST_PATTERN, max_fps=fps)


async def frames(stub: Stub, source_id: str, count: int, *, delay: float = 0.0) -> list[pb.Frame]:
    got: list[pb.Frame] = []
    call = stub.Subscribe(pb.SubscribeRequest(source_id=source_id))
    try:
        async for message in call:
            if message.HasField("frame"):
                got.append(message.frame)
                if len(got) == count:
                    break
                if delay:
                    await asyncio.sleep(delay)
    finally:
        call.cancel()  # leaving the loop alone would keep the subscription open until GC
    return got


async def states_until(
    stream: AsyncIterator[pb.SubscribeResponse], wanted: list[int], limit_s: float
) -> list[int]:
    """Source states seen on ``stream`` until ``wanted`` appeared in order."""
    seen: list[int] = []

    async def watch() -> None:
        remaining = list(wanted)
        async for message in stream:
            if message.HasField("source"):
                seen.append(message.source.state)
                if remaining and message.source.state == remaining[0]:
                    remaining.pop(0)
                    if not remaining:
                        return

    await asyncio.wait_for(watch(), limit_s)
    return seen


async def test_two_sources_three_subscribers_each(detector_stub: Stub) -> None:
    await detector_stub.AddSource(pb.AddSourceRequest(source=pattern("a")))
    await detector_stub.AddSource(pb.AddSourceRequest(source=pattern("b")))
    results = await asyncio.gather(
        *(frames(detector_stub, source, 8) for source in ("a", "b") for _ in range(3))
    )
    for got in results:
        assert len(got) == 8
        assert [f.sequence for f in got] == sorted({f.sequence for f in got})
    listed = await detector_stub.ListSources(pb.ListSourcesRequest())
    assert [s.spec.id for s in listed.sources] == ["a", "b", "default"]


async def test_adding_and_removing_a_source_leaves_others_streaming(detector_stub: Stub) -> None:
    await detector_stub.AddSource(pb.AddSourceRequest(source=pattern("keep")))
    received: list[pb.Frame] = []

    async def watch_keep() -> None:
        async for message in detector_stub.Subscribe(pb.SubscribeRequest(source_id="keep")):
            if message.HasField("frame"):
                received.append(message.frame)

    watcher = asyncio.create_task(watch_keep())
    await asyncio.sleep(1.0)
    await detector_stub.AddSource(pb.AddSourceRequest(source=pattern("temp")))
    temp = await frames(detector_stub, "temp", 3)
    assert len(temp) == 3
    removed = await detector_stub.RemoveSource(pb.RemoveSourceRequest(source_id="temp"))
    assert removed.source.spec.id == "temp"
    before = len(received)
    await asyncio.sleep(1.0)
    watcher.cancel()
    # "keep" went on at its own pace throughout (15 fps: about 15 frames in that second).
    assert len(received) - before >= 8
    seqs = [f.sequence for f in received]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await detector_stub.GetSource(pb.GetSourceRequest(source_id="temp"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def seconds_between(first: pb.Frame, last: pb.Frame) -> float:
    return (last.capture_time.ToNanoseconds() - first.capture_time.ToNanoseconds()) / 1e9


async def test_slow_subscriber_loses_frames_and_fast_one_does_not(detector_stub: Stub) -> None:
    await detector_stub.AddSource(pb.AddSourceRequest(source=pattern("shared")))
    slow_task = asyncio.create_task(frames(detector_stub, "shared", 8, delay=1.0))
    fast = await frames(detector_stub, "shared", 60)
    slow = await slow_task
    span = fast[-1].sequence - fast[0].sequence + 1
    assert len(fast) / span >= 0.9
    assert fast[-1].dropped <= len(fast) * 0.1
    # The slow one reads one frame a second: past the frames the transport holds, it skips
    # ahead and is told how many it lost.
    assert slow[-1].dropped > 20
    assert slow[-1].sequence - slow[0].sequence > 20
    # It subscribed first and was still reading (1 frame/s, so 7 s) when the fast one got its
    # last frame: the fast one's whole run happened with the slow reader attached.
    assert seconds_between(fast[-1], slow[-1]) > 0
    # Meanwhile the fast one got frames at the source's own pace (15 fps; 5 leaves room for a
    # loaded 2-core machine), where a source throttled to its slowest reader would give ~1.
    fast_fps = (len(fast) - 1) / seconds_between(fast[0], fast[-1])
    assert 5.0 <= fast_fps <= 16.5, fast_fps


async def test_a_dead_stream_reconnects_by_itself(detector_stub: Stub) -> None:
    camera = MjpegCamera(fps=20)
    camera.start()
    spec = pb.SourceSpec(id="cam", kind=pb.SOURCE_KIND_STREAM, uri=camera.url)
    await detector_stub.AddSource(pb.AddSourceRequest(source=spec))
    call = detector_stub.Subscribe(pb.SubscribeRequest(source_id="cam"))
    stream = call.__aiter__()
    try:
        await states_until(stream, [pb.SOURCE_STATE_LIVE], limit_s=10)
        camera.stop()
        await states_until(stream, [pb.SOURCE_STATE_RECONNECTING], limit_s=8)
        source = (await detector_stub.GetSource(pb.GetSourceRequest(source_id="cam"))).source
        assert source.last_error  # the reason, while it is not live
        camera.start()  # same port
        await states_until(stream, [pb.SOURCE_STATE_LIVE], limit_s=20)
        message = await asyncio.wait_for(stream.__anext__(), 5)
        while not message.HasField("frame"):
            message = await asyncio.wait_for(stream.__anext__(), 5)
        assert (message.frame.width, message.frame.height) == (320, 240)
        source = (await detector_stub.GetSource(pb.GetSourceRequest(source_id="cam"))).source
        assert source.counters.reconnects >= 1
        # Recovered: LIVE is never shown next to the error it recovered from.
        assert source.state == pb.SOURCE_STATE_LIVE
        assert source.last_error == ""
    finally:
        call.cancel()
        camera.stop()


def write_clip(path: pathlib.Path, count: int = 15) -> pathlib.Path:
    """A 30 fps clip whose frame i is plain grey of level i * 10."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 30, (320, 240))
    for i in range(count):
        writer.write(np.full((240, 320, 3), i * 10, np.uint8))
    writer.release()
    return path


async def test_file_source_plays_and_stops_at_its_end(
    detector_stub: Stub, tmp_path: pathlib.Path
) -> None:
    path = write_clip(tmp_path / "clip.avi")
    spec = pb.SourceSpec(id="file", kind=pb.SOURCE_KIND_FILE, uri=str(path), max_fps=30)
    await detector_stub.AddSource(pb.AddSourceRequest(source=spec))
    call = detector_stub.Subscribe(pb.SubscribeRequest(source_id="file"))
    try:
        seen = await states_until(
            call.__aiter__(), [pb.SOURCE_STATE_LIVE, pb.SOURCE_STATE_STOPPED], limit_s=10
        )
        assert seen[-1] == pb.SOURCE_STATE_STOPPED
    finally:
        call.cancel()


def grey_level(jpeg: bytes) -> float:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert image is not None
    return float(image.mean())


async def test_looping_file_source_plays_past_its_end_and_never_stops(
    detector_stub: Stub, tmp_path: pathlib.Path
) -> None:
    path = write_clip(tmp_path / "loop.avi", count=15)
    spec = pb.SourceSpec(id="loop", kind=pb.SOURCE_KIND_FILE, uri=str(path), loop=True, max_fps=30)
    await detector_stub.AddSource(pb.AddSourceRequest(source=spec))
    states: list[int] = []
    got: list[pb.Frame] = []

    async def watch() -> None:
        async for message in detector_stub.Subscribe(pb.SubscribeRequest(source_id="loop")):
            if message.HasField("source"):
                states.append(message.source.state)
            elif len(got) < 45:
                got.append(message.frame)
            else:
                return

    # 45 frames of a 15-frame clip: three passes, about 1.5 s at 30 fps.
    await asyncio.wait_for(watch(), 15)
    assert pb.SOURCE_STATE_STOPPED not in states
    assert pb.SOURCE_STATE_LIVE in states
    levels = [grey_level(f.jpeg) for f in got]
    # The grey level climbs 0..140 and drops back at every restart from the first frame.
    restarts = sum(b < a - 50 for a, b in itertools.pairwise(levels))
    assert restarts >= 2, levels
    source = (await detector_stub.GetSource(pb.GetSourceRequest(source_id="loop"))).source
    assert source.state != pb.SOURCE_STATE_STOPPED
    assert source.counters.frames_published >= 45


async def test_missing_file_fails_with_the_reason(
    detector_stub: Stub, tmp_path: pathlib.Path
) -> None:
    absent = tmp_path / "absent.mp4"
    spec = pb.SourceSpec(id="gone", kind=pb.SOURCE_KIND_FILE, uri=str(absent))
    await detector_stub.AddSource(pb.AddSourceRequest(source=spec))
    call = detector_stub.Subscribe(pb.SubscribeRequest(source_id="gone"))
    try:
        seen = await states_until(call.__aiter__(), [pb.SOURCE_STATE_FAILED], limit_s=10)
    finally:
        call.cancel()
    # Retrying cannot make the file appear: FAILED at once, never RECONNECTING.
    assert pb.SOURCE_STATE_RECONNECTING not in seen
    source = (await detector_stub.GetSource(pb.GetSourceRequest(source_id="gone"))).source
    assert source.state == pb.SOURCE_STATE_FAILED
    assert f"{str(absent)!r} does not exist" in source.last_error
    assert source.counters.reconnects == 0


async def test_missing_camera_is_a_state_not_a_crash(detector_stub: Stub) -> None:
    spec = pb.SourceSpec(id="cam9", kind=pb.SOURCE_KIND_WEBCAM, uri="97")
    await detector_stub.AddSource(pb.AddSourceRequest(source=spec))
    call = detector_stub.Subscribe(pb.SubscribeRequest(source_id="cam9"))
    try:
        await states_until(call.__aiter__(), [pb.SOURCE_STATE_RECONNECTING], limit_s=10)
        source = (await detector_stub.GetSource(pb.GetSourceRequest(source_id="cam9"))).source
        assert "camera 97 cannot be opened" in source.last_error
    finally:
        call.cancel()
    # The service is unharmed.
    assert len(await frames(detector_stub, "default", 2)) == 2


async def test_capture_stops_after_the_last_subscriber_leaves(detector_stub: Stub) -> None:
    await frames(detector_stub, "default", 2)
    deadline = time.monotonic() + 5
    state = None
    while time.monotonic() < deadline:
        source = (await detector_stub.GetSource(pb.GetSourceRequest(source_id="default"))).source
        state = source.state
        if state == pb.SOURCE_STATE_STOPPED:
            break
        await asyncio.sleep(0.1)
    assert state == pb.SOURCE_STATE_STOPPED


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (pb.SourceSpec(id="bad id!", kind=pb.SOURCE_KIND_TEST_PATTERN), "source id"),
        (pb.SourceSpec(id="x"), "kind is required"),
        (pb.SourceSpec(id="x", kind=pb.SOURCE_KIND_STREAM, uri="file:///etc/passwd"), "rtsp://"),
        (pb.SourceSpec(id="default", kind=pb.SOURCE_KIND_TEST_PATTERN), "already exists"),
        (
            pb.SourceSpec(
                id="x", kind=pb.SOURCE_KIND_TEST_PATTERN, alert_policy=pb.AlertPolicy.ValueType(9)
            ),
            "alert_policy",
        ),
    ],
)
async def test_bad_sources_are_refused(
    detector_stub: Stub, spec: pb.SourceSpec, message: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await detector_stub.AddSource(pb.AddSourceRequest(source=spec))
    assert message in (info.value.details() or "")


@pytest.mark.parametrize("source_id", ["cam\n", "\ncam", "cam ", "", "a" * 65, "cäm"])
async def test_a_source_id_must_match_the_rule_whole(detector_stub: Stub, source_id: str) -> None:
    # "cam\n" passed a ``^...$`` match: the rule is a full match, as the bridge's is.
    spec = pb.SourceSpec(id=source_id, kind=pb.SOURCE_KIND_TEST_PATTERN)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await detector_stub.AddSource(pb.AddSourceRequest(source=spec))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "source id must be 1-64 letters" in (info.value.details() or "")
    listed = await detector_stub.ListSources(pb.ListSourcesRequest())
    assert [s.spec.id for s in listed.sources] == ["default"]


async def test_the_longest_source_id_is_accepted(detector_stub: Stub) -> None:
    spec = pb.SourceSpec(id="a-Z_9" * 12 + "abcd", kind=pb.SOURCE_KIND_TEST_PATTERN)
    added = await detector_stub.AddSource(pb.AddSourceRequest(source=spec))
    assert added.source.spec.id == spec.id
    assert len(spec.id) == 64
