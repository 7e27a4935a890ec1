"""Track ids end to end: the real service, the ONNX backend on a model whose boxes follow blue
squares (``moving_objects``), file sources for the live path and Detect with scripted times."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from detector_service.server import DetectorServer
from detector_service.settings import DetectorSettings
from tests.detector_service import moving_objects as mo
from vigil.cli import main
from vigil.core.errors import InvalidInput
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.sdk import AsyncDetectorClient, DetectFrame, DetectResult

if TYPE_CHECKING:  # the async stub type exists only in the .pyi stubs
    from vigil.detector.v1.detector_service_pb2_grpc import DetectorServiceAsyncStub as Stub

FPS = 20
TRACK_LOST_S = 2.0


@pytest.fixture
def detector_settings(tmp_path: pathlib.Path) -> DetectorSettings:
    return DetectorSettings(
        port=0,
        backend="onnx",
        onnx_model_path=mo.build_model(tmp_path / "blue.onnx"),
        confidence=0.4,
        weapon_classes=["knife"],
        track_lost_s=TRACK_LOST_S,
        data_dir=tmp_path / "data",
        linger_s=0.2,
    )


async def play(stub: Stub, source_id: str, video: pathlib.Path) -> list[pb.Frame]:
    """Every processed frame of a file source, from its start until the file ends."""
    spec = pb.SourceSpec(id=source_id, kind=pb.SOURCE_KIND_FILE, uri=str(video), max_fps=FPS)
    await stub.AddSource(pb.AddSourceRequest(source=spec))
    frames: list[pb.Frame] = []
    call = stub.Subscribe(pb.SubscribeRequest(source_id=source_id, omit_jpeg=True))
    try:
        async with asyncio.timeout(30):
            async for message in call:
                if message.HasField("frame"):
                    frames.append(message.frame)
                elif message.source.state == pb.SOURCE_STATE_STOPPED and frames:
                    break
    finally:
        call.cancel()
    return frames


def left(frame: pb.Frame) -> list[int]:
    """Track ids of the frame's boxes in the left half (one object there)."""
    return [
        d.track_id for d in frame.detections if d.box.x_max <= mo.W / 2 and d.HasField("track_id")
    ]


def right(frame: pb.Frame) -> list[int]:
    return [
        d.track_id for d in frame.detections if d.box.x_min >= mo.W / 2 and d.HasField("track_id")
    ]


async def test_live_track_ids_follow_two_moving_objects(
    detector: DetectorServer, detector_stub: Stub, tmp_path: pathlib.Path
) -> None:
    # One square walks right and down through the left half, the other left through the right.
    a = mo.walk((0, 20), (2, 1), 60)
    b = mo.walk((270, 150), (-1, 0), 60)
    video = mo.write_video(tmp_path / "two.avi", list(zip(a, b, strict=True)), FPS)

    frames = await play(detector_stub, "yard", video)

    assert len(frames) >= 20
    assert all(len(f.detections) == 2 for f in frames)
    a_ids = [i for f in frames for i in left(f)]
    b_ids = [i for f in frames for i in right(f)]
    # Each object has one id from its first frame on (the tracker confirms at once on the first
    # frame of a stream), and the two differ.
    assert len(a_ids) == len(b_ids) == len(frames)
    assert len(set(a_ids)) == len(set(b_ids)) == 1
    assert a_ids[0] != b_ids[0]
    # The boxes moved: the same id followed an object across the scene, not a fixed box.
    first, last = frames[0].detections, frames[-1].detections
    moved = [abs(x.box.x_min - y.box.x_min) for x, y in zip(first, last, strict=True)]
    assert min(moved) > 30


def detect_frames(script: list[tuple[int, list[tuple[int, int]]]]) -> Iterator[DetectFrame]:
    """Frames of stream "cam" at the scripted times (ms from an arbitrary start)."""
    start_s = 1_700_000_000.0
    for n, (at_ms, squares) in enumerate(script):
        yield DetectFrame(mo.jpeg(squares), sequence=n, timestamp=start_s + at_ms / 1000)


async def tracked(
    detector: DetectorServer, frames: Iterator[DetectFrame], *, source_id: str = "", track: bool
) -> list[DetectResult]:
    async with AsyncDetectorClient(f"127.0.0.1:{detector.port}") as client:
        results = client.detect(frames, source_id=source_id, track=track)
        async with results:
            return [r async for r in results]


def ids(result: DetectResult) -> list[int | None]:
    return [d.track_id for d in result.detections]


async def test_detect_keeps_tracks_by_time_over_uneven_frames(detector: DetectorServer) -> None:
    still = [(100, 100)]
    script: list[tuple[int, list[tuple[int, int]]]] = []
    at = 0
    # Uneven timing, as motion gating makes it: bursts, then long waits.
    for gap in (0, 40, 300, 60, 900, 35, 120, 700, 50):
        at += gap
        script.append((at, still))
    seen = len(script)
    # Gone for 1.4 s (under the 2 s budget) over 40 frames, more than ByteTrack's 30-frame default.
    for _ in range(40):
        at += 35
        script.append((at, []))
    at += 35
    script.append((at, still))
    back = len(script) - 1
    # Then gone for 2.5 s with no frame at all (a static scene detected nothing), then back.
    at += 2500
    script.append((at, still))
    script.append((at + 400, still))

    results = await tracked(detector, detect_frames(script), source_id="cam", track=True)

    assert [r.sequence for r in results] == list(range(len(script)))
    first = ids(results[0])
    assert first[0] is not None
    assert all(ids(r) == first for r in results[:seen])
    assert all(ids(r) == [] for r in results[seen:back])
    assert ids(results[back]) == first  # 1.4 s away: the same object
    # 2.5 s away: a new track, which the tracker confirms on its second sighting.
    assert ids(results[back + 1]) == [None]
    renewed = ids(results[back + 2])
    assert renewed[0] is not None
    assert renewed != first


async def test_detect_tracks_only_when_asked_and_only_a_named_stream(
    detector: DetectorServer,
) -> None:
    script = [(i * 100, [(50 + i, 60)]) for i in range(4)]
    untracked = await tracked(detector, detect_frames(script), source_id="cam", track=False)
    assert [ids(r) for r in untracked] == [[None]] * 4
    with pytest.raises(InvalidInput, match="source_id"):
        await tracked(detector, detect_frames(script), track=True)


async def test_vigil_detect_track_prints_track_ids(
    detector: DetectorServer, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video = mo.write_video(tmp_path / "walk.avi", [[xy] for xy in mo.walk((0, 50), (3, 2), 8)], 10)
    command = ["detect", str(video), "--detector", f"127.0.0.1:{detector.port}"]

    # The CLI blocks on its stream: off the loop that serves it.
    assert await asyncio.to_thread(main, [*command, "--track"]) == 2
    assert "--track needs --source-id" in capsys.readouterr().err
    assert await asyncio.to_thread(main, [*command, "--track", "--source-id", "door"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 8
    assert all(" knife #1 (weapon) " in line for line in lines)
    assert await asyncio.to_thread(main, command) == 0
    assert "#" not in capsys.readouterr().out
