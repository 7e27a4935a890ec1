"""Watch-rule checks: do a camera's recent pictures show a situation described in plain language?

The detector owns the rules and their pre-filter, and asks here only for candidate moments. The
model answers on one line of fixed form (``model_checks``): yes or no, then a bounded reason, so
the answer always parses; it is validated anyway. Checks run after verification and chat
(``Priority.WATCH_RULE``), taking turns by rule, and are counted per rule in the metrics.
"""

from __future__ import annotations

import re

from analyzer_service.engine import Priority
from analyzer_service.generation import Model
from analyzer_service.metrics import AnalyzerMetrics
from analyzer_service.model_checks import (
    AnswerForm,
    Question,
    ask,
    bounded_text,
    check_id,
    check_pictures,
    check_text,
)
from analyzer_service.settings import AnalyzerSettings
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.core.errors import Unavailable

MAX_CONDITION_CHARS = 300
MAX_REASON_CHARS = 200


def _form() -> AnswerForm:
    reason = bounded_text(MAX_REASON_CHARS)
    return AnswerForm(
        pattern=f"answer: (yes|no); reason: {reason}",
        parser=re.compile(f"answer: (?P<answer>yes|no); reason: (?P<reason>{reason})"),
        longest=len(f"answer: yes; reason: {'x' * MAX_REASON_CHARS}"),
    )


FORM = _form()


def prompt(condition: str, pictures: int) -> str:
    return (
        f'A watch rule of a security camera: "{condition}". The {pictures} pictures above are '
        "recent frames of that camera, oldest first, each after its label. Do they show the "
        "situation of the rule?\n"
        "Answer on one line, in exactly this form:\n"
        "answer: <yes or no>; reason: <why, in one sentence>"
    )


def answer_of(match: re.Match[str], model: str, seconds: float) -> pb.CheckWatchRuleResponse:
    reason = match["reason"].strip()
    if not reason or len(reason) > MAX_REASON_CHARS:
        raise Unavailable(f"{model} gave a reason out of its bounds; ask again")
    return pb.CheckWatchRuleResponse(
        matched=match["answer"] == "yes", reason=reason, model=model, model_seconds=seconds
    )


class RuleChecker:
    def __init__(self, *, settings: AnalyzerSettings, model: Model, metrics: AnalyzerMetrics):
        self.settings = settings
        self.model = model
        self.metrics = metrics

    async def check(self, request: pb.CheckWatchRuleRequest) -> pb.CheckWatchRuleResponse:
        rule_id = check_id("rule_id", request.rule_id)
        check_id("source_id", request.source_id)
        condition = check_text("condition", request.condition, MAX_CONDITION_CHARS)
        await check_pictures(request.pictures, self.settings, self.model)
        question = Question(
            kind="watch_rule",
            prompt=prompt(condition, len(request.pictures)),
            pictures=request.pictures,
            form=FORM,
            priority=Priority.WATCH_RULE,
            fair_key=rule_id,
            sampling=request.sampling,
        )
        answer = await ask(self.model, self.settings, question)
        response = answer_of(answer.match, answer.model, answer.seconds)
        self.metrics.rule_checked(rule_id, response.matched, response.model_seconds)
        return response
