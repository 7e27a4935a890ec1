"""The watch-rule figure of ``vigil bench alert``: model calls per hour for 100 rules over 16
cameras, against a naive check of every rule on every chunk of video (NVIDIA VSS runs its model on
every chunk; Frigate runs one watch job at a time).

``rules_for`` spreads the rules over the bench's cameras (each gets a share of the rule mix: some
that only a person's presence makes candidates, some limited to motion, some to a time window);
the bench adds them to its sources' specs, runs its load, and reads the sources' ``watch_rules``
status before and after a measured window. ``rule_calls`` turns the two readings into the figures:
model calls per hour, extrapolated from the window, and the naive count (every rule, every chunk
of ``CHUNK_S`` seconds, all hour) over it. Both come from the same run, so the ratio holds on any
machine; the absolute rate depends on how often the scripted scenes make candidates.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from vigil.detector.v1 import detector_service_pb2 as pb

RULES = 100
CAMERAS = 16
# The naive baseline's chunk: one model call per rule per 10 s of video (VSS's default chunk).
CHUNK_S = 10.0
HOUR_S = 3600.0
# What a rule asks, cycled over the rules: (condition, classes, motion).
MIX: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("someone climbs the fence", ("person",), False),
    ("a person lying on the floor", ("person",), False),
    ("a vehicle in the loading bay", ("car", "truck"), False),
    ("someone carries a ladder", ("person",), True),
    ("a door is left open", (), True),
)


def rules_for(cameras: int = CAMERAS, rules: int = RULES) -> list[list[pb.WatchRule]]:
    """``rules`` watch rules spread over ``cameras`` (camera i gets rules i, i + cameras, ...)."""
    per_camera: list[list[pb.WatchRule]] = [[] for _ in range(cameras)]
    for n in range(rules):
        condition, classes, motion = MIX[n % len(MIX)]
        per_camera[n % cameras].append(
            pb.WatchRule(
                id=f"rule-{n:03d}",
                condition=condition,
                filter=pb.WatchRuleFilter(classes=classes, motion=motion),
            )
        )
    return per_camera


@dataclass(frozen=True)
class RuleCalls:
    """What the rules did over a measured window."""

    rules: int
    window_s: float
    candidates: int
    checks: int
    held_back: int

    @property
    def calls_per_hour(self) -> float:
        return self.checks * HOUR_S / self.window_s

    @property
    def naive_per_hour(self) -> float:
        return self.rules * HOUR_S / CHUNK_S

    @property
    def ratio(self) -> float | None:
        """Our calls per naive call (lower is better); None when the naive count is nothing."""
        return self.calls_per_hour / self.naive_per_hour if self.naive_per_hour else None

    def figures(self) -> dict[str, Any]:
        ratio = self.ratio
        return {
            "rules": self.rules,
            "rule_window_s": round(self.window_s, 1),
            "rule_candidates": self.candidates,
            "rule_checks": self.checks,
            "rule_held_back": self.held_back,
            "rule_calls_per_hour": round(self.calls_per_hour, 1),
            "naive_every_chunk_calls_per_hour": round(self.naive_per_hour, 1),
            "rule_calls_to_naive_ratio": None if ratio is None else round(ratio, 4),
        }


def _totals(sources: Iterable[pb.Source]) -> dict[tuple[str, str], pb.WatchRuleStatus]:
    return {(s.spec.id, r.rule_id): r for s in sources for r in s.watch_rules}


def rule_calls(
    before: Iterable[pb.Source], after: Iterable[pb.Source], window_s: float
) -> RuleCalls:
    """The rules' work between two readings of the sources, ``window_s`` apart."""
    if window_s <= 0:
        raise ValueError("the measured window must last")
    first, last = _totals(before), _totals(after)
    zero = pb.WatchRuleStatus()

    def grown(name: str) -> int:
        return sum(
            getattr(status, name) - getattr(first.get(key, zero), name)
            for key, status in last.items()
        )

    return RuleCalls(
        rules=len(last),
        window_s=window_s,
        candidates=grown("candidates"),
        checks=grown("checks"),
        held_back=grown("held_back"),
    )
