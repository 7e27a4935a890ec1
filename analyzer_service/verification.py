"""Alert verification: does an incident's pictures show the weapon the detector saw?

The detector sends the snapshot, frames around it and crops of each box, labelled; the model
answers in one line of fixed form (``model_checks``): what it sees, a verdict, a threat level and
a reason, each a choice or bounded text, so the answer always parses; it is validated anyway and
becomes a ``vigil.common.v1.Verification``. Requests run first among the model's work
(``Priority.VERIFICATION``), taking turns by source.
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
from vigil.common.v1 import common_pb2 as cpb
from vigil.core.errors import Unavailable

MAX_CLASS_CHARS = 64
MAX_SEES_CHARS = 120
MAX_REASON_CHARS = 200
MAX_THREAT = 2

VERDICTS = {
    "confirmed": cpb.VERDICT_CONFIRMED,
    "rejected": cpb.VERDICT_REJECTED,
    "uncertain": cpb.VERDICT_UNCERTAIN,
}


def _form() -> AnswerForm:
    sees, reason = bounded_text(MAX_SEES_CHARS), bounded_text(MAX_REASON_CHARS)
    # A rejection (no weapon there) carries no threat: the pattern itself says so.
    verdicts = "confirmed; threat: [0-2]|rejected; threat: 0|uncertain; threat: [0-2]"
    pattern = f"sees: {sees}; verdict: ({verdicts}); reason: {reason}"
    parser = re.compile(
        f"sees: (?P<sees>{sees}); verdict: (?P<verdict>confirmed|rejected|uncertain); "
        f"threat: (?P<threat>[0-{MAX_THREAT}]); reason: (?P<reason>{reason})"
    )
    longest = len(
        f"sees: {'x' * MAX_SEES_CHARS}; verdict: uncertain; threat: 0; "
        f"reason: {'x' * MAX_REASON_CHARS}"
    )
    return AnswerForm(pattern, parser, longest)


FORM = _form()


def prompt(class_name: str, pictures: int) -> str:
    return (
        f"A security camera's detector saw a {class_name} and raised an alert. Check the alert "
        f"against the {pictures} pictures above, each after its label: the snapshot of the "
        "moment, frames around it and crops of what the detector boxed.\n"
        "Answer on one line, in exactly this form:\n"
        "sees: <what the pictures show, in a few words>; verdict: <confirmed, rejected or "
        "uncertain>; threat: <0, 1 or 2>; reason: <why, in one sentence>\n"
        f"confirmed: you see a {class_name}. rejected: there is none, a false alarm (threat 0). "
        "uncertain: you cannot tell. Threat: 0 none, 1 possible, 2 immediate (a weapon held "
        "ready or pointed at someone)."
    )


def verification_of(match: re.Match[str], model: str, seconds: float) -> cpb.Verification:
    """The answer's fields, validated (the form allows nothing else; a change to it might)."""
    verdict, threat = match["verdict"], int(match["threat"])
    sees, reason = match["sees"].strip(), match["reason"].strip()
    if verdict == "rejected" and threat:
        raise Unavailable(f"{model} rejected the alert with threat level {threat}; ask again")
    if not sees or not reason or len(sees) > MAX_SEES_CHARS or len(reason) > MAX_REASON_CHARS:
        raise Unavailable(f"{model} gave an answer out of its bounds; ask again")
    return cpb.Verification(
        verdict=VERDICTS[verdict],
        sees=sees,
        threat_level=threat,
        reason=reason,
        model=model,
        model_seconds=seconds,
    )


class Verifier:
    def __init__(self, *, settings: AnalyzerSettings, model: Model, metrics: AnalyzerMetrics):
        self.settings = settings
        self.model = model
        self.metrics = metrics

    async def verify(self, request: pb.VerifyIncidentRequest) -> cpb.Verification:
        check_id("incident_id", request.incident_id)
        source_id = check_id("source_id", request.source_id)
        class_name = check_text("class_name", request.class_name, MAX_CLASS_CHARS)
        await check_pictures(request.pictures, self.settings, self.model)
        question = Question(
            kind="verification",
            prompt=prompt(class_name, len(request.pictures)),
            pictures=request.pictures,
            form=FORM,
            priority=Priority.VERIFICATION,
            fair_key=source_id,
            sampling=request.sampling,
        )
        answer = await ask(self.model, self.settings, question)
        verification = verification_of(answer.match, answer.model, answer.seconds)
        self.metrics.verified(verification)
        return verification
