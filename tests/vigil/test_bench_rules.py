"""The watch-rule figure of ``vigil bench alert``: rules spread over cameras, calls per hour from
two readings of the sources, and the ratio to a naive check of every rule on every chunk."""

from __future__ import annotations

import pytest

from detector_service.watch_rule_spec import validate_watch_rules
from vigil.bench.rules import CHUNK_S, rule_calls, rules_for
from vigil.detector.v1 import detector_service_pb2 as pb


def test_a_hundred_rules_over_sixteen_cameras_are_valid() -> None:
    spread = rules_for()
    assert len(spread) == 16
    assert sum(len(rules) for rules in spread) == 100
    assert {len(rules) for rules in spread} == {6, 7}
    for n, rules in enumerate(spread):
        validate_watch_rules(pb.SourceSpec(id=f"cam{n}", watch_rules=rules))


def source(source_id: str, **checks: tuple[int, int, int]) -> pb.Source:
    return pb.Source(
        spec=pb.SourceSpec(id=source_id),
        watch_rules=[
            pb.WatchRuleStatus(rule_id=rule, candidates=c, checks=k, held_back=h)
            for rule, (c, k, h) in checks.items()
        ],
    )


def test_calls_per_hour_and_the_ratio_come_from_the_window() -> None:
    before = [source("a", fence=(10, 1, 9), door=(0, 0, 0)), source("b", bay=(5, 1, 4))]
    after = [source("a", fence=(130, 7, 123), door=(0, 0, 0)), source("b", bay=(65, 3, 62))]
    calls = rule_calls(before, after, window_s=60.0)
    assert (calls.rules, calls.candidates, calls.checks, calls.held_back) == (3, 180, 8, 172)
    assert calls.calls_per_hour == pytest.approx(8 * 60)
    # Every rule on every 10 s chunk, all hour.
    assert calls.naive_per_hour == pytest.approx(3 * 3600 / CHUNK_S)
    assert calls.ratio == pytest.approx(480 / 1080)
    assert calls.figures()["rule_calls_to_naive_ratio"] == pytest.approx(0.4444)
    with pytest.raises(ValueError, match="must last"):
        rule_calls(before, after, window_s=0)
