"""Watch rules through the real gRPC API: what AddSource and UpdateSource refuse (and why), what
they keep, and the sources file's form of rules."""

from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING

import grpc
import pytest

from detector_service.settings import DetectorSettings
from detector_service.sources import load_sources_file
from tests.detector_service import moving_objects as mo
from vigil.core.errors import InvalidInput
from vigil.detector.v1 import detector_service_pb2 as pb

if TYPE_CHECKING:  # the async stub type exists only in the .pyi stubs
    from vigil.detector.v1.detector_service_pb2_grpc import DetectorServiceAsyncStub as Stub

AREA = pb.Zone(
    name="fence",
    kind=pb.ZONE_KIND_AREA,
    points=[pb.Point(x=x, y=y) for x, y in ((0.5, 0), (1, 0), (1, 1), (0.5, 1))],
)
LINE = pb.Zone(
    name="gate", kind=pb.ZONE_KIND_LINE, points=[pb.Point(x=0.3, y=0), pb.Point(x=0.3, y=1)]
)


@pytest.fixture
def detector_settings(tmp_path: pathlib.Path) -> DetectorSettings:
    # The test model reports person, gun and knife: rules naming other classes are refused.
    return DetectorSettings(
        port=0,
        backend="onnx",
        onnx_model_path=mo.build_model(tmp_path / "blue.onnx"),
        data_dir=tmp_path / "data",
    )


def rule(**kw: object) -> pb.WatchRule:
    fields: dict[str, object] = {"id": "climb", "condition": "someone climbs the fence"}
    fields.update(kw)
    return pb.WatchRule(**fields)  # type: ignore[arg-type]


def source(*rules: pb.WatchRule, time_zone: str = "") -> pb.SourceSpec:
    return pb.SourceSpec(
        id="yard",
        kind=pb.SOURCE_KIND_FILE,
        uri="/nonexistent.mp4",
        zones=[AREA, LINE],
        watch_rules=rules,
        time_zone=time_zone,
    )


REFUSED = [
    ((rule(), rule()), "", "rule ids must be unique"),
    ((rule(id="climb fence"),), "", "an id of 1 to 64 letters"),
    ((rule(condition="  "),), "", "the condition must be 1 to 300 characters"),
    ((rule(condition="x" * 301),), "", "the condition must be 1 to 300 characters"),
    ((rule(filter=pb.WatchRuleFilter(zones=["roof"])),), "", "'roof', which is not an area"),
    ((rule(filter=pb.WatchRuleFilter(zones=["gate"])),), "", "'gate', which is not an area"),
    (
        (rule(filter=pb.WatchRuleFilter(classes=["elephant"])),),
        "",
        "'elephant', which the detector never reports (it reports gun, knife, person)",
    ),
    ((rule(filter=pb.WatchRuleFilter(min_dwell_s=-1)),), "", "min_dwell_s must be 0 to"),
    ((rule(check_interval_s=0.5),), "", "check_interval_s must be 0 (the default, 10) or 1 to"),
    ((rule(budget_per_hour=100_000),), "", "budget_per_hour must be 0 (the default, 60) to 3600"),
    ((rule(incident_kind="a/b"),), "", "incident_kind must be"),
    ((rule(active=pb.DailyWindow(start="22:00", end="24:00")),), "", 'as "HH:MM"'),
    ((rule(active=pb.DailyWindow(start="7:00", end="08:00")),), "", 'as "HH:MM"'),
    ((rule(active=pb.DailyWindow()),), "", 'as "HH:MM"'),
    ((rule(active=pb.DailyWindow(start="08:00", end="08:00")),), "", "must differ"),
    ((rule(),), "Mars/Olympus_Mons", "is not an IANA time zone"),
    ((rule(),), "../../etc/passwd", "is not an IANA time zone"),
]


@pytest.mark.parametrize(("rules", "time_zone", "message"), REFUSED)
async def test_rules_that_cannot_work_are_refused(
    detector_stub: Stub, rules: tuple[pb.WatchRule, ...], time_zone: str, message: str
) -> None:
    spec = source(*rules, time_zone=time_zone)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await detector_stub.AddSource(pb.AddSourceRequest(source=spec))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (caught.value.details() or "")
    # Nothing was added.
    listed = await detector_stub.ListSources(pb.ListSourcesRequest())
    assert "yard" not in [s.spec.id for s in listed.sources]


async def test_rules_are_kept_and_reported_and_an_update_is_checked(detector_stub: Stub) -> None:
    night = rule(
        filter=pb.WatchRuleFilter(classes=["person"], zones=["fence"], min_dwell_s=2, motion=True),
        check_interval_s=5,
        budget_per_hour=30,
        incident_kind="intrusion",
        active=pb.DailyWindow(start="22:00", end="06:00"),
    )
    lying = rule(id="lying", condition="a person lying on the floor", disabled=True)
    spec = source(night, lying, time_zone="Europe/Berlin")
    added = (await detector_stub.AddSource(pb.AddSourceRequest(source=spec))).source
    assert list(added.spec.watch_rules) == [night, lying]
    assert added.spec.time_zone == "Europe/Berlin"
    assert [(s.rule_id, s.candidates, s.checks) for s in added.watch_rules] == [
        ("climb", 0, 0),
        ("lying", 0, 0),
    ]
    # An update is validated like an addition, and a valid one replaces the rules.
    bad = pb.SourceSpec()
    bad.CopyFrom(added.spec)
    bad.watch_rules[1].id = "climb"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await detector_stub.UpdateSource(pb.UpdateSourceRequest(source=bad))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    good = pb.SourceSpec()
    good.CopyFrom(added.spec)
    del good.watch_rules[0]
    updated = (await detector_stub.UpdateSource(pb.UpdateSourceRequest(source=good))).source
    assert [s.rule_id for s in updated.watch_rules] == ["lying"]
    got = (await detector_stub.GetSource(pb.GetSourceRequest(source_id="yard"))).source
    assert [r.id for r in got.spec.watch_rules] == ["lying"]


def test_the_sources_file_declares_rules(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "sources.toml"
    path.write_text(
        """
[[sources]]
id = "yard"
kind = "file"
uri = "/videos/yard.mp4"
time_zone = "America/New_York"
[[sources.zones]]
name = "fence"
kind = "area"
points = [[0.5, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]]
[[sources.watch_rules]]
id = "climb"
condition = "someone climbs the fence"
filter = { classes = ["person"], zones = ["fence"], min_dwell_s = 2 }
check_interval_s = 5
budget_per_hour = 20
active = { start = "22:00", end = "06:00" }
"""
    )
    path.chmod(0o600)
    [spec] = load_sources_file(path)
    assert spec.time_zone == "America/New_York"
    [climb] = spec.watch_rules
    assert list(climb.filter.classes) == ["person"]
    assert climb.filter.min_dwell_s == 2
    assert (climb.check_interval_s, climb.budget_per_hour) == (5, 20)
    assert (climb.active.start, climb.active.end) == ("22:00", "06:00")
    # A rule naming a zone the source does not have is refused with the file's name.
    path.write_text(path.read_text().replace('zones = ["fence"]', 'zones = ["roof"]'))
    with pytest.raises(InvalidInput, match="'roof', which is not an area"):
        load_sources_file(path)
    path.write_text(path.read_text().replace("check_interval_s = 5", "interval = 5"))
    with pytest.raises(InvalidInput, match="watch rule 'climb'"):
        load_sources_file(path)
