"""Watch rules on a live source while the analyzer is down: the pre-filter counts candidates on
frames that have them and none on frames that do not, checks fail with the reason in the rule's
status, are retried with later candidates, and the frames keep flowing. The figures are in the
metrics too."""

from __future__ import annotations

import asyncio
import pathlib
import socket
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from detector_service.server import DetectorServer
from detector_service.settings import DetectorSettings
from tests.detector_service import moving_objects as mo
from vigil.detector.v1 import detector_service_pb2 as pb

if TYPE_CHECKING:  # the async stub type exists only in the .pyi stubs
    from vigil.detector.v1.detector_service_pb2_grpc import DetectorServiceAsyncStub as Stub

FPS = 15


@pytest.fixture
def down_analyzer() -> Iterator[str]:
    """An address where nothing listens: a port held bound but never listening refuses."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{held.getsockname()[1]}"


@pytest.fixture
def detector_settings(tmp_path: pathlib.Path, down_analyzer: str) -> DetectorSettings:
    return DetectorSettings(
        port=0,
        backend="onnx",
        onnx_model_path=mo.build_model(tmp_path / "blue.onnx"),
        confidence=0.4,
        weapon_classes=["knife"],
        data_dir=tmp_path / "data",
        analyzer_url=down_analyzer,
        watch_rule_timeout_s=5.0,
        recording=False,
    )


def knife_walk(path: pathlib.Path) -> pathlib.Path:
    """4 s: a knife walks across the left half for 2 s, then 2 s of an empty picture."""
    scene: list[list[tuple[int, int]]] = [[xy] for xy in mo.walk((0, 100), (2, 0), 2 * FPS)]
    return mo.write_video(path, scene + [[]] * (2 * FPS), FPS)


async def until(stub: Stub, condition: Callable[[pb.Source], bool]) -> pb.Source:
    async with asyncio.timeout(60):
        while True:
            source = (await stub.GetSource(pb.GetSourceRequest(source_id="yard"))).source
            if condition(source):
                return source
            await asyncio.sleep(0.1)


def rule_status(source: pb.Source, rule_id: str) -> pb.WatchRuleStatus:
    [status] = [s for s in source.watch_rules if s.rule_id == rule_id]
    return status


async def test_a_down_analyzer_fails_checks_and_nothing_else(
    detector: DetectorServer, detector_stub: Stub, tmp_path: pathlib.Path
) -> None:
    knife = pb.WatchRule(
        id="knife-drawn",
        condition="someone draws a knife",
        filter=pb.WatchRuleFilter(classes=["knife"]),
        check_interval_s=1,
    )
    person = pb.WatchRule(
        id="person-lying",
        condition="a person lying on the floor",
        filter=pb.WatchRuleFilter(classes=["person"]),
        check_interval_s=1,
    )
    spec = pb.SourceSpec(
        id="yard",
        kind=pb.SOURCE_KIND_FILE,
        uri=str(knife_walk(tmp_path / "walk.avi")),
        loop=True,
        max_fps=FPS,
        mode=pb.SOURCE_MODE_ALWAYS,
        watch_rules=[knife, person],
    )
    await detector_stub.AddSource(pb.AddSourceRequest(source=spec))

    def retried(source: pb.Source) -> bool:
        status = rule_status(source, "knife-drawn")
        # A candidate that was neither checked nor held back went to the analyzer and failed.
        tried = bool(status.last_error) and status.candidates - status.held_back >= 2
        # And a whole loop of the video was processed, its empty half included.
        return tried and source.counters.frames_published >= 4 * FPS

    source = await until(detector_stub, retried)
    status = rule_status(source, "knife-drawn")
    assert "the analyzer's check failed" in status.last_error
    assert (status.checks, status.matches, status.model_seconds) == (0, 0, 0.0)
    # Frames without a knife (half of the loop) made no candidates; no frame had a person.
    assert 0 < status.candidates < source.counters.frames_published
    lying = rule_status(source, "person-lying")
    assert (lying.candidates, lying.checks, lying.last_error) == (0, 0, "")
    assert source.state == pb.SOURCE_STATE_LIVE
    # No incident opened from a failed check.
    page = await detector_stub.ListIncidents(pb.ListIncidentsRequest(source_id="yard"))
    assert all(not i.rule_id for i in page.incidents)

    registry = detector.metrics.registry
    labels = {"source": "yard", "rule": "knife-drawn"}
    candidates = registry.get_sample_value("vigil_watch_rule_candidates_total", labels)
    assert candidates is not None
    assert candidates >= status.candidates
    assert registry.get_sample_value("vigil_watch_rule_checks_total", labels) == 0
    lying_labels = {"source": "yard", "rule": "person-lying"}
    assert registry.get_sample_value("vigil_watch_rule_candidates_total", lying_labels) == 0
    assert registry.get_sample_value("vigil_watch_rule_checks_dropped_total") == 0
