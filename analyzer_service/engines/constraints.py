"""Constrained answers (``engine.Choice``, ``engine.Regex``) as vLLM's structured outputs take
them, in process (``StructuredOutputsParams``) and over HTTP (the ``structured_outputs`` field).

A JSON schema is refused: measured on CPU with xgrammar, the answer wandered into runs of
newlines and vLLM then terminated it ("grammar rejected tokens"), so it would not parse anyway.
Callers build structured answers from choices and bounded patterns instead.
"""

from __future__ import annotations

import re
from typing import Any

from analyzer_service.engine import Choice, GenerateRequest, JsonSchema, Regex
from vigil.core.errors import InvalidInput


def structured_outputs(model: str, request: GenerateRequest) -> dict[str, Any] | None:
    """vLLM's structured-output fields for the request's constraint; None when it has none."""
    constraint = request.constraint
    if constraint is None:
        return None
    if isinstance(constraint, Choice):
        if not constraint.options or not all(constraint.options):
            raise InvalidInput("a choice constraint needs options, none of them empty")
        return {"choice": list(constraint.options)}
    if isinstance(constraint, Regex):
        try:
            re.compile(constraint.pattern)
        except re.error as exc:
            raise InvalidInput(f"the answer's pattern is not a regular expression: {exc}") from exc
        return {"regex": constraint.pattern}
    assert isinstance(constraint, JsonSchema)
    raise InvalidInput(
        f"{model} cannot constrain an answer to a JSON schema through this engine (it does not "
        "hold with vLLM's structured outputs here); build it from Choice and Regex parts"
    )
