"""What the language model answers about live cameras: verdicts on incidents and watch-rule checks.

Shared by the analyzer (which answers), the detector (which asks) and the SDK's callers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from vigil.analyzer.v1 import analyzer_service_pb2 as apb
from vigil.common.v1 import common_pb2 as cpb

VERDICTS = ("confirmed", "rejected", "uncertain")
_VERDICT_OF = {
    cpb.VERDICT_CONFIRMED: "confirmed",
    cpb.VERDICT_REJECTED: "rejected",
    cpb.VERDICT_UNCERTAIN: "uncertain",
}
_VERDICT_PB = {name: value for value, name in _VERDICT_OF.items()}


@dataclasses.dataclass(frozen=True)
class Picture:
    """One JPEG given to the model, with what it shows ("snapshot", "crop of gun (0.91)")."""

    jpeg: bytes
    label: str = ""

    def to_proto(self) -> cpb.Picture:
        return cpb.Picture(jpeg=self.jpeg, label=self.label)


@dataclasses.dataclass(frozen=True)
class Sampling:
    """Per-request sampling; None keeps the service's default. A seed makes answers repeatable."""

    temperature: float | None = None
    seed: int | None = None

    def to_proto(self) -> cpb.SamplingSettings:
        m = cpb.SamplingSettings()
        if self.temperature is not None:
            m.temperature = self.temperature
        if self.seed is not None:
            m.seed = self.seed
        return m

    @classmethod
    def from_proto(cls, m: cpb.SamplingSettings) -> Sampling:
        return cls(
            temperature=m.temperature if m.HasField("temperature") else None,
            seed=m.seed if m.HasField("seed") else None,
        )


@dataclasses.dataclass(frozen=True)
class Verification:
    """The model's check of an incident: verdict is "confirmed", "rejected" or "uncertain"."""

    verdict: str
    sees: str
    threat_level: int
    reason: str
    model: str
    model_seconds: float

    @classmethod
    def from_proto(cls, m: cpb.Verification) -> Verification:
        return cls(
            verdict=_VERDICT_OF.get(m.verdict, ""),
            sees=m.sees,
            threat_level=m.threat_level,
            reason=m.reason,
            model=m.model,
            model_seconds=m.model_seconds,
        )

    def to_proto(self) -> cpb.Verification:
        return cpb.Verification(
            verdict=_VERDICT_PB.get(self.verdict, cpb.VERDICT_UNSPECIFIED),
            sees=self.sees,
            threat_level=self.threat_level,
            reason=self.reason,
            model=self.model,
            model_seconds=self.model_seconds,
        )


@dataclasses.dataclass(frozen=True)
class RuleAnswer:
    """The model's answer to a watch rule: whether the situation shows, and why."""

    matched: bool
    reason: str
    model: str
    model_seconds: float

    @classmethod
    def from_proto(cls, m: apb.CheckWatchRuleResponse) -> RuleAnswer:
        return cls(matched=m.matched, reason=m.reason, model=m.model, model_seconds=m.model_seconds)


def verify_request(
    incident_id: str,
    source_id: str,
    class_name: str,
    pictures: Sequence[Picture],
    sampling: Sampling | None,
) -> apb.VerifyIncidentRequest:
    return apb.VerifyIncidentRequest(
        incident_id=incident_id,
        source_id=source_id,
        class_name=class_name,
        pictures=[p.to_proto() for p in pictures],
        sampling=sampling.to_proto() if sampling else None,
    )


def rule_request(
    rule_id: str,
    source_id: str,
    condition: str,
    pictures: Sequence[Picture],
    sampling: Sampling | None,
) -> apb.CheckWatchRuleRequest:
    return apb.CheckWatchRuleRequest(
        rule_id=rule_id,
        source_id=source_id,
        condition=condition,
        pictures=[p.to_proto() for p in pictures],
        sampling=sampling.to_proto() if sampling else None,
    )


def verification_of(response: apb.VerifyIncidentResponse) -> Verification:
    return Verification.from_proto(response.verification)
