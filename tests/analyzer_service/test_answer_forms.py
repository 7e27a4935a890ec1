"""The forms the model's answers take for alert verification and watch rules: the pattern the
engine holds the model to and the parser that reads the answer agree, the longest answer fits
the tokens asked for, and what the parser would take but the schema forbids is an error
(UNAVAILABLE: ask again), never a verdict."""

from __future__ import annotations

import re

import pytest

from analyzer_service import rule_checks, verification
from analyzer_service.model_checks import AnswerForm
from vigil.common.v1 import common_pb2 as cpb
from vigil.core.errors import Unavailable

SEES, REASON = "a man holding a black pistol", "the crop shows a gun held ready."


def verdict_line(sees: str, verdict: str, threat: int | str, reason: str) -> str:
    return f"sees: {sees}; verdict: {verdict}; threat: {threat}; reason: {reason}"


def held(form: AnswerForm, text: str) -> bool:
    """Whether the engine's pattern allows the answer."""
    return re.fullmatch(form.pattern, text) is not None


def test_the_longest_answers_fit_their_forms() -> None:
    longest = verdict_line("a" * 120, "uncertain", 2, "b" * 200)
    assert len(longest) == verification.FORM.longest
    assert held(verification.FORM, longest)
    assert not held(verification.FORM, verdict_line("a" * 121, "uncertain", 2, "b"))
    assert not held(verification.FORM, verdict_line("a", "uncertain", 2, "b" * 201))
    rule = f"answer: yes; reason: {'c' * 200}"
    assert len(rule) == rule_checks.FORM.longest
    assert held(rule_checks.FORM, rule)


def test_an_answer_becomes_a_verification() -> None:
    text = verdict_line(SEES + "  ", "confirmed", 2, REASON)
    assert held(verification.FORM, text)
    match = verification.FORM.parse("m", text)
    assert verification.verification_of(match, "m", 0.5) == cpb.Verification(
        verdict=cpb.VERDICT_CONFIRMED,
        sees=SEES,
        threat_level=2,
        reason=REASON,
        model="m",
        model_seconds=0.5,
    )


@pytest.mark.parametrize(
    "text",
    [
        verdict_line(SEES, "maybe", 1, REASON),
        verdict_line(SEES, "confirmed", 3, REASON),
        verdict_line("", "confirmed", 1, REASON),
        verdict_line(" leading space", "confirmed", 1, REASON),
        verdict_line(SEES, "confirmed", 1, "a; b"),
        verdict_line(SEES, "confirmed", 1, REASON) + "\n",
        "confirmed",
    ],
)
def test_answers_out_of_form_are_errors(text: str) -> None:
    assert not held(verification.FORM, text)
    with pytest.raises(Unavailable, match="out of its form"):
        verification.FORM.parse("m", text)


def test_a_rejection_with_a_threat_is_an_error() -> None:
    text = verdict_line(SEES, "rejected", 1, REASON)
    assert not held(verification.FORM, text)  # the engine never lets it through
    match = verification.FORM.parse("m", text)  # the parser alone would
    with pytest.raises(Unavailable, match="threat level 1"):
        verification.verification_of(match, "m", 0.5)


def test_an_answer_becomes_a_rule_answer() -> None:
    for word, matched in (("yes", True), ("no", False)):
        text = f"answer: {word}; reason: {REASON}"
        assert held(rule_checks.FORM, text)
        response = rule_checks.answer_of(rule_checks.FORM.parse("m", text), "m", 0.25)
        assert (response.matched, response.reason, response.model_seconds) == (
            matched,
            REASON,
            0.25,
        )
    for text in ("answer: maybe; reason: x", "answer: yes; reason: ", "answer: yes"):
        assert not held(rule_checks.FORM, text)
        with pytest.raises(Unavailable):
            rule_checks.FORM.parse("m", text)
