"""Watch rules end to end: scripted cameras on the real detector, whose candidate moments go to
the real analyzer and the session's real vLLM engine (the tiny Gemma 3).

Three always-on cameras play a knife shown for 2 s, then 2 s of an empty picture, looped. Each
has four rules, twelve in all sharing the one engine: two that the knife makes candidates (one
per condition; budgets of two calls an hour), one limited to a zone the knife never enters and
one for people, whom no frame shows. The pre-filter keeps the model from every frame without a
candidate (the counts show it), the budgets stop the checks, and a yes opens one incident of the
rule's kind per camera. The checks' sampling is the detector's setting (a seed, as a deployment
could set it), chosen so that the model answers yes to the first condition and no to the second.
"""

from __future__ import annotations

import asyncio
import pathlib
import socket
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest

from analyzer_service.server import AnalyzerServer, serve
from analyzer_service.settings import AnalyzerSettings
from detector_service.settings import DetectorSettings
from tests.detector_service import moving_objects as mo
from tests.llm import SharedEngine
from vigil.detector.v1 import detector_service_pb2 as pb

if TYPE_CHECKING:  # the async stub type exists only in the .pyi stubs
    from vigil.detector.v1.detector_service_pb2_grpc import DetectorServiceAsyncStub as Stub

FPS = 10
CAMERAS = ("gate", "yard", "dock")
BUDGET = 2
# A seed under which the tiny model answers yes to YES_CONDITION about the knife's picture and
# no to OTHER_CONDITION (found by asking with seeds 0, 1, 2...; a change to the model, the prompt
# or the picture may move it).
SEED = 2
TEMPERATURE = 1.0
YES_CONDITION = "someone holds a knife"
OTHER_CONDITION = "a person lying on the floor"
RIGHT = pb.Zone(
    name="right",
    kind=pb.ZONE_KIND_AREA,
    points=[pb.Point(x=x, y=y) for x, y in ((0.6, 0), (1, 0), (1, 1), (0.6, 1))],
)


@pytest.fixture
def idle_detector_address() -> Iterator[str]:
    """Where the analyzer's detection pass would go: nothing listens (it is not used here)."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{held.getsockname()[1]}"


@pytest.fixture
async def analyzer(
    tmp_path: pathlib.Path, llm_engine: SharedEngine, idle_detector_address: str
) -> AsyncIterator[AnalyzerServer]:
    settings = AnalyzerSettings(
        host="127.0.0.1",
        port=0,
        data_dir=tmp_path / "analyzer",
        media_workers=1,
        engine="none",
        max_concurrent_jobs=1,
        detector_address=idle_detector_address,
    )
    server = await serve(settings, engine=llm_engine)
    try:
        yield server
    finally:
        await server.stop(0)


@pytest.fixture
def detector_settings(tmp_path: pathlib.Path, analyzer: AnalyzerServer) -> DetectorSettings:
    return DetectorSettings(
        port=0,
        backend="onnx",
        onnx_model_path=mo.build_model(tmp_path / "blue.onnx"),
        confidence=0.4,
        weapon_classes=["knife"],
        data_dir=tmp_path / "detector",
        recording=False,
        analyzer_url=f"127.0.0.1:{analyzer.port}",
        # One picture a check: the knife's frames are all alike, so every check of a condition
        # is the same request, and the seed decides its answer.
        watch_rule_frames=1,
        watch_rule_seed=SEED,
        watch_rule_temperature=TEMPERATURE,
        watch_rule_timeout_s=120.0,
    )


def knife_then_nothing(path: pathlib.Path) -> pathlib.Path:
    """4 s: a knife standing still in the left half for 2 s, then 2 s of an empty picture."""
    scenes: list[list[tuple[int, int]]] = [[(40, 100)]] * (2 * FPS) + [[]] * (2 * FPS)
    return mo.write_video(path, scenes, FPS)


def camera(source_id: str, video: pathlib.Path) -> pb.SourceSpec:
    knife = pb.WatchRuleFilter(classes=["knife"])
    rules = [
        pb.WatchRule(
            id="holds-knife",
            condition=YES_CONDITION,
            filter=knife,
            check_interval_s=1,
            budget_per_hour=BUDGET,
            incident_kind="armed-person",
        ),
        pb.WatchRule(
            id="lying",
            condition=OTHER_CONDITION,
            filter=knife,
            check_interval_s=1,
            budget_per_hour=BUDGET,
            incident_kind="person-down",
        ),
        pb.WatchRule(
            id="knife-right",
            condition=YES_CONDITION,
            filter=pb.WatchRuleFilter(classes=["knife"], zones=["right"]),
        ),
        pb.WatchRule(
            id="person",
            condition=OTHER_CONDITION,
            filter=pb.WatchRuleFilter(classes=["person"]),
        ),
    ]
    return pb.SourceSpec(
        id=source_id,
        kind=pb.SOURCE_KIND_FILE,
        uri=str(video),
        loop=True,
        max_fps=FPS,
        mode=pb.SOURCE_MODE_ALWAYS,
        zones=[RIGHT],
        watch_rules=rules,
    )


def statuses(source: pb.Source) -> dict[str, pb.WatchRuleStatus]:
    return {s.rule_id: s for s in source.watch_rules}


async def sources(stub: Stub) -> list[pb.Source]:
    return list((await stub.ListSources(pb.ListSourcesRequest())).sources)


def spent(source: pb.Source) -> bool:
    """Both checked rules spent their budget and held back candidates since; the picture has
    been empty for a while (a whole loop played)."""
    rules = statuses(source)
    checked = (rules["holds-knife"], rules["lying"])
    return source.counters.frames_published >= 5 * FPS and all(
        r.checks == BUDGET and r.held_back >= 5 and not r.last_error for r in checked
    )


@pytest.mark.timeout(900)  # its setup may load the session's engine
async def test_many_rules_share_the_engine_and_a_yes_opens_an_incident(
    detector_stub: Stub, tmp_path: pathlib.Path
) -> None:
    video = knife_then_nothing(tmp_path / "knife.avi")
    for source_id in CAMERAS:
        await detector_stub.AddSource(pb.AddSourceRequest(source=camera(source_id, video)))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 600
    while True:
        seen = [s for s in await sources(detector_stub) if s.spec.id in CAMERAS]
        if all(spent(s) for s in seen):
            break
        assert loop.time() < deadline, [(s.spec.id, list(s.watch_rules)) for s in seen]
        await asyncio.sleep(0.2)
    # A last look after more frames: the budgets hold.
    await asyncio.sleep(1.0)
    final = {s.spec.id: s for s in await sources(detector_stub) if s.spec.id in CAMERAS}

    for source_id, source in final.items():
        rules = statuses(source)
        holds, lying = rules["holds-knife"], rules["lying"]
        for rule in (holds, lying):
            assert rule.checks == BUDGET, source_id
            assert rule.model_seconds > 0
            assert rule.last_reason
            # The pre-filter: frames of the empty half of the loop made no candidates.
            assert rule.candidates < source.counters.frames_published
        # Every check of a condition is the same request: the seed's answer each time.
        assert (holds.matches, lying.matches) == (BUDGET, 0)
        # Never candidates: never checked.
        for idle in (rules["knife-right"], rules["person"]):
            assert (idle.candidates, idle.checks, idle.held_back) == (0, 0, 0)

        page = await detector_stub.ListIncidents(pb.ListIncidentsRequest(source_id=source_id))
        by_rule = [i for i in page.incidents if i.rule_id]
        # Two yes answers to one situation: one incident of the rule's kind.
        armed = [i for i in by_rule if i.rule_id == "holds-knife"]
        assert len(armed) == 1
        assert armed[0].class_name == "armed-person"
        assert armed[0].rule_reason == holds.last_reason
        assert [d.class_name for d in armed[0].detections] == ["knife"]
        # The other rule's noes opened none.
        assert [i.rule_id for i in by_rule] == ["holds-knife"]
