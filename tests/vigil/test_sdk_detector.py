"""The SDK's detector clients, blocking and asyncio, against the real detector service."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import cv2
import numpy as np
import pytest

from detector_service.server import DetectorServer
from tests.vigil.conftest import jpeg, stage_incident, wait_for_incident_subscribers
from vigil.core.errors import AlreadyExists, InvalidInput, NotFound
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.sdk import (
    AsyncDetectorClient,
    DetectFrame,
    DetectorClient,
    DetectResult,
    Frame,
    Incident,
    IncidentEvent,
    Source,
)


def test_sources_lifecycle(detector_address: str) -> None:
    with DetectorClient(detector_address) as client:
        assert [s.id for s in client.list_sources()] == ["default"]
        added = client.add_source(
            "lobby", "test_pattern", max_fps=5, width=320, height=240, display_name="Lobby"
        )
        assert isinstance(added, Source)
        assert (added.id, added.kind, added.state) == ("lobby", "test_pattern", "idle")
        assert (added.width, added.height, added.max_fps, added.display_name) == (
            320,
            240,
            5.0,
            "Lobby",
        )
        assert added.proto.spec.id == "lobby"
        assert client.get_source("lobby").display_name == "Lobby"
        assert [s.id for s in client.list_sources()] == ["default", "lobby"]
        with pytest.raises(AlreadyExists) as exists:
            client.add_source("lobby", "test_pattern")
        assert exists.value.code == "ALREADY_EXISTS"
        assert client.remove_source("lobby").id == "lobby"
        with pytest.raises(NotFound, match="no source 'lobby'"):
            client.get_source("lobby")
        with pytest.raises(NotFound):
            client.remove_source("lobby")


def test_source_modes(detector_address: str) -> None:
    with DetectorClient(detector_address) as client:
        assert client.get_source("default").mode == "on_demand"
        watched = client.add_source("watched", "test_pattern", mode="always", max_fps=5)
        assert (watched.mode, watched.state) == ("always", "starting")
        assert watched.proto.spec.mode == pb.SOURCE_MODE_ALWAYS
        # A file is on demand unless told otherwise; the answer carries the mode in effect.
        played = client.add_source("played", "file", "/videos/lobby.mp4")
        assert (played.mode, played.state) == ("on_demand", "idle")
        assert {s.id: s.mode for s in client.list_sources()} == {
            "default": "on_demand",
            "played": "on_demand",
            "watched": "always",
        }
        with pytest.raises(InvalidInput, match="unknown source mode 'sometimes'"):
            client.add_source("x", "test_pattern", mode="sometimes")


def test_bad_source_specs_are_refused(detector_address: str) -> None:
    with DetectorClient(detector_address) as client:
        with pytest.raises(InvalidInput, match="unknown source kind"):
            client.add_source("x", "carrier-pigeon")
        # The service's own validation, mapped back from INVALID_ARGUMENT.
        with pytest.raises(InvalidInput) as bad:
            client.add_source("no spaces allowed", "test_pattern")
        assert bad.value.code == "INVALID_ARGUMENT"


def test_detect_answers_in_order_with_sizes_and_errors(detector_address: str) -> None:
    frames: list[DetectFrame | bytes] = [
        jpeg(10, 160, 120),
        DetectFrame(jpeg(20, 64, 48), annotate=True, timestamp=1_700_000_000.25),
        b"not a jpeg",
        DetectFrame(jpeg(30, 32, 32), sequence=99, source_id="cam-7"),
    ]
    with DetectorClient(detector_address) as client:
        results = list(client.detect(frames, source_id="bench"))
    assert all(isinstance(r, DetectResult) for r in results)
    assert [r.sequence for r in results] == [0, 1, 2, 99]
    assert [r.source_id for r in results] == ["bench", "bench", "bench", "cam-7"]
    assert [(r.width, r.height) for r in results] == [(160, 120), (64, 48), (0, 0), (32, 32)]
    assert results[1].timestamp == pytest.approx(1_700_000_000.25)
    assert abs(results[0].timestamp - time.time()) < 30
    # Only the frame that asked for it comes back annotated, and it decodes.
    assert results[0].annotated_jpeg == b""
    decoded = cv2.imdecode(np.frombuffer(results[1].annotated_jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None
    assert decoded.shape == (48, 64, 3)
    assert results[2].error is not None
    assert results[2].error.code == "INVALID_IMAGE"
    assert [r.error for r in results if r.sequence != 2] == [None, None, None]
    assert all(r.detections == () for r in results)


def test_subscribe_gets_the_source_then_frames(detector: DetectorServer) -> None:
    with DetectorClient(f"127.0.0.1:{detector.port}") as client:
        client.add_source("pattern", "test_pattern", max_fps=20, width=160, height=120)
        seen: list[Frame | Source] = []
        with client.subscribe("pattern") as stream:
            for item in stream:
                seen.append(item)
                if sum(isinstance(i, Frame) for i in seen) == 3:
                    break
        assert isinstance(seen[0], Source)
        assert seen[0].id == "pattern"
        frames = [i for i in seen if isinstance(i, Frame)]
        assert [f.source_id for f in frames] == ["pattern"] * 3
        assert all((f.width, f.height) == (160, 120) for f in frames)
        assert all(f.jpeg.startswith(b"\xff\xd8") for f in frames)
        assert frames[0].sequence < frames[1].sequence < frames[2].sequence
        # Leaving the block ends the call: the service sees its subscriber go.
        deadline = time.monotonic() + 5
        while client.get_source("pattern").counters.subscribers and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.get_source("pattern").counters.subscribers == 0


def test_subscribe_to_an_unknown_source_raises_not_found(detector_address: str) -> None:
    with DetectorClient(detector_address) as client, pytest.raises(NotFound):
        next(iter(client.subscribe("nowhere")))


def test_incident_stream_and_history(detector: DetectorServer) -> None:
    with DetectorClient(f"127.0.0.1:{detector.port}") as client:
        stream = client.incidents("door")
        wait_for_incident_subscribers(detector)
        stage_incident(detector, "door", close=True)
        events: list[IncidentEvent] = []
        for event in stream:
            events.append(event)
            if len(events) == 2:
                stream.cancel()
        assert [e.kind for e in events] == ["opened", "closed"]
        opened = events[0].incident
        assert isinstance(opened, Incident)
        assert (opened.source_id, opened.class_name, opened.is_open) == ("door", "knife", True)
        assert opened.peak_confidence == pytest.approx(0.9)
        assert [d.class_name for d in opened.detections] == ["knife"]
        assert opened.detections[0].box.x_max == 50
        assert opened.snapshot_jpeg == b""  # not asked for
        assert not events[1].incident.is_open

        stage_incident(detector, "hall", close=False)
        deadline = time.monotonic() + 5
        while len(client.list_incidents().items) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        everything = client.list_incidents(include_snapshot=True)
        assert [i.source_id for i in everything.items] == ["hall", "door"]
        assert everything.items[0].snapshot_jpeg.startswith(b"\xff\xd8")
        assert everything.next_page_token == ""
        first = client.list_incidents(page_size=1)
        assert [i.source_id for i in first.items] == ["hall"]
        second = client.list_incidents(page_size=1, page_token=first.next_page_token)
        assert [i.source_id for i in second.items] == ["door"]
        assert [i.id for i in client.list_incidents("door").items] == [opened.id]


async def test_async_client_covers_every_call(detector: DetectorServer) -> None:
    async with AsyncDetectorClient(f"127.0.0.1:{detector.port}") as client:
        await client.wait_until_ready(5)
        added = await client.add_source("gate", "test_pattern", max_fps=20)
        assert added.state == "idle"
        assert (await client.get_source("gate")).id == "gate"
        assert [s.id for s in await client.list_sources()] == ["default", "gate"]

        async def frames() -> AsyncIterator[bytes]:
            for value in range(5):
                yield jpeg(value * 40)

        results = [r async for r in client.detect(frames(), annotate=True)]
        assert [r.sequence for r in results] == [0, 1, 2, 3, 4]
        assert all(r.annotated_jpeg for r in results)

        items: list[Frame | Source] = []
        async with client.subscribe("gate", omit_jpeg=True) as stream:
            async for item in stream:
                items.append(item)
                if isinstance(item, Frame):
                    break
        first, frame = items[0], items[-1]
        assert isinstance(first, Source)
        assert isinstance(frame, Frame)
        assert frame.jpeg == b""  # omit_jpeg
        assert frame.width > 0

        stream_incidents = client.incidents()
        # The call starts when first read; read in a task, then wait for the service to see it.
        reader = asyncio.ensure_future(anext(stream_incidents))
        await asyncio.to_thread(wait_for_incident_subscribers, detector)
        stage_incident(detector, "gate", close=False)
        event = await asyncio.wait_for(reader, 5)
        stream_incidents.cancel()
        assert (event.kind, event.incident.source_id) == ("opened", "gate")
        with pytest.raises(StopAsyncIteration):
            await anext(stream_incidents)
        page = await client.list_incidents("gate")
        assert [i.id for i in page.items] == [event.incident.id]

        assert (await client.remove_source("gate")).id == "gate"
        with pytest.raises(NotFound):
            await client.get_source("gate")
