"""The SDK's watch rules, blocking and asyncio, against the real detector service; and
``vigil rules`` on top of them."""

from __future__ import annotations

import dataclasses
import json

import pytest

from detector_service.server import DetectorServer
from vigil.cli import main
from vigil.core.errors import InvalidInput
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.sdk import AsyncDetectorClient, DetectorClient, Source, WatchRule, WatchRuleStatus, Zone

YARD = Zone.area("yard", [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0)])
FENCE = WatchRule(
    "fence", "someone climbs the fence", classes=("person",), zones=("yard",), min_dwell_s=2,
    motion=True, check_interval_s=5, budget_per_hour=30, incident_kind="intrusion",
    active_start="22:00", active_end="06:00",
)  # fmt: skip
LYING = WatchRule("lying", "a person lying on the floor", disabled=True)


def test_watch_rules_round_trip_the_message() -> None:
    assert WatchRule.from_proto(FENCE.to_proto()) == FENCE
    assert WatchRule.from_proto(LYING.to_proto()) == LYING
    # No window is "always": the message leaves it unset rather than empty.
    assert not LYING.to_proto().HasField("active")
    status = pb.WatchRuleStatus(
        rule_id="fence", candidates=9, checks=4, matches=1, held_back=5, model_seconds=1.5,
        last_reason="a man on the fence", last_error="",
    )  # fmt: skip
    source = Source.from_proto(pb.Source(spec=pb.SourceSpec(id="x"), watch_rules=[status]))
    assert source.watch_rule_status == (
        WatchRuleStatus("fence", 9, 4, 1, 5, 1.5, "a man on the fence", ""),
    )


def test_update_source_with_watch_rules(detector_address: str) -> None:
    with DetectorClient(detector_address) as client:
        spec = client.get_source("default").spec
        assert (spec.watch_rules, spec.time_zone) == ((), "")
        updated = client.update_source(
            dataclasses.replace(
                spec, zones=(YARD,), watch_rules=(FENCE, LYING), time_zone="Europe/Berlin"
            )
        )
        assert (updated.watch_rules, updated.time_zone) == ((FENCE, LYING), "Europe/Berlin")
        assert [(s.rule_id, s.checks) for s in updated.watch_rule_status] == [
            ("fence", 0),
            ("lying", 0),
        ]
        got = client.get_source("default")
        assert (got.spec.watch_rules, got.spec.time_zone) == ((FENCE, LYING), "Europe/Berlin")
        # Removing one keeps the other, and its status.
        kept = client.update_source(dataclasses.replace(got.spec, watch_rules=(LYING,)))
        assert [s.rule_id for s in kept.watch_rule_status] == ["lying"]
        with pytest.raises(InvalidInput, match="'Mars/Olympus' is not an IANA time zone"):
            client.update_source(dataclasses.replace(got.spec, time_zone="Mars/Olympus"))
        twice = (LYING, dataclasses.replace(FENCE, id="lying"))
        with pytest.raises(InvalidInput, match="rule ids must be unique"):
            client.update_source(dataclasses.replace(got.spec, watch_rules=twice))
        nowhere = dataclasses.replace(FENCE, zones=("moon",))
        with pytest.raises(InvalidInput, match="names 'moon', which is not an area"):
            client.update_source(dataclasses.replace(got.spec, watch_rules=(nowhere,)))


async def test_async_client_watch_rules(detector: DetectorServer) -> None:
    async with AsyncDetectorClient(f"127.0.0.1:{detector.port}") as client:
        spec = (await client.get_source("default")).spec
        updated = await client.update_source(dataclasses.replace(spec, watch_rules=(LYING,)))
        assert updated.watch_rules == (LYING,)
        cleared = await client.update_source(dataclasses.replace(updated.spec, watch_rules=()))
        assert (cleared.watch_rules, cleared.watch_rule_status) == ((), ())


def test_cli_rules(detector_address: str, capsys: pytest.CaptureFixture[str]) -> None:
    address = ["--detector", detector_address]
    with DetectorClient(detector_address) as client:
        spec = client.get_source("default").spec
        client.update_source(dataclasses.replace(spec, zones=(YARD,), time_zone="Europe/Berlin"))
    assert main(["rules", "list", "default", *address]) == 0
    assert capsys.readouterr().out == "no watch rules on default\n"
    fence = ["rules", "add", "default", "fence", "someone climbs the fence", "--classes",
             "person", "--zones", "yard", "--dwell", "2", "--motion", "--interval", "5",
             "--budget", "30", "--kind", "intrusion", "--active", "22:00-06:00"]  # fmt: skip
    assert main([*fence, *address]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == [
        "ID", "STATE", "CONDITION", "PRE-FILTER", "ACTIVE", "CHECKS/YES", "LAST"
    ]  # fmt: skip
    assert out[1].split() == [
        "fence", "on", "someone", "climbs", "the", "fence", "person", "in", "yard", "dwell", "2",
        "s", "motion", "22:00-06:00", "0/0", "-",
    ]  # fmt: skip
    assert out[2] == "time zone: Europe/Berlin"
    assert main(["rules", "add", "default", "lying", "a person lying", "--disabled", *address]) == 0
    # Adding an existing id replaces that rule where it stands.
    assert main(["rules", "add", "default", "fence", "someone on the fence", *address]) == 0
    capsys.readouterr()
    with DetectorClient(detector_address) as client:
        rules = client.get_source("default").spec.watch_rules
    assert [(r.id, r.condition, r.disabled) for r in rules] == [
        ("fence", "someone on the fence", False),
        ("lying", "a person lying", True),
    ]
    assert main(["rules", "list", "default", "--json", *address]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["time_zone"] == "Europe/Berlin"
    assert [r["id"] for r in shown["rules"]] == ["fence", "lying"]
    assert [(s["rule_id"], s["checks"]) for s in shown["status"]] == [("fence", 0), ("lying", 0)]

    assert main(["rules", "remove", "default", "fence", *address]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[:2] == ["lying", "off"]
    assert main(["rules", "remove", "default", "fence", *address]) == 2
    assert "default has no watch rule 'fence'" in capsys.readouterr().err
    assert main(["rules", "add", "default", "x", "y", "--active", "late", *address]) == 2
    assert "--active 'late': expected HH:MM-HH:MM" in capsys.readouterr().err
    assert main(["rules", "add", "default", "x", "y", "--zones", "moon", *address]) == 1
    assert "INVALID_ARGUMENT: watch rule 'x': filter.zones names 'moon'" in capsys.readouterr().err
    assert main(["rules", "list", "nope", *address]) == 1
