"""Constrained answers and per-request sampling on both engines (in process and vLLM's OpenAI
server), with the tiny random Gemma 3: whatever it would have said, the answer is one of the
choices or matches the pattern, and ends there although the engines ignore <eos> otherwise. A
seed repeats an answer; a JSON schema is refused (it does not hold with vLLM on CPU)."""

from __future__ import annotations

import re

import pytest

from analyzer_service.engine import (
    Choice,
    Constraint,
    Engine,
    GenerateRequest,
    JsonSchema,
    Regex,
)
from analyzer_service.engines.vllm_remote import RemoteVllmEngine
from tests.llm import API_KEY, SERVED_NAME, SharedEngine, texts
from vigil.core.errors import InvalidInput

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

VERDICTS = ["confirmed", "rejected", "uncertain"]
# The separators and the bounded word, as verification and rule checks use them.
PATTERN = r"(yes|no); [a-z][a-z ,.'-]{0,11}"
SEEDS = range(4)
# Nothing listens on the discard port: a request that got as far as the network would fail there.
NOWHERE = "http://127.0.0.1:9/v1"


@pytest.fixture(params=["in-process", "http"])
def engine(request: pytest.FixtureRequest) -> Engine:
    name = "local_engine" if request.param == "in-process" else "remote_engine"
    found: Engine = request.getfixturevalue(name)
    return found


async def answer(engine: Engine, constraint: Constraint, seed: int, rid: str) -> str:
    request = GenerateRequest(
        f"{rid}-{seed}",
        "Is anyone there? Answer.",
        [],
        # Enough for the longest answer (a token carries at least a character), and no more.
        max_tokens=20,
        constraint=constraint,
        temperature=1.0,
        seed=seed,
    )
    return "".join([text async for text in texts(engine, request)])


async def test_every_answer_is_one_of_the_choices(engine: Engine) -> None:
    answers = [await answer(engine, Choice(VERDICTS), seed, "choice") for seed in SEEDS]
    assert set(answers) <= set(VERDICTS), answers


async def test_every_answer_matches_the_pattern_and_a_seed_repeats_it(engine: Engine) -> None:
    answers = [await answer(engine, Regex(PATTERN), seed, "regex") for seed in SEEDS]
    for text in answers:
        assert re.fullmatch(PATTERN, text), answers
    # The seed is what the answer depends on: another seed, another answer (random model).
    assert len(set(answers)) > 1, answers
    assert await answer(engine, Regex(PATTERN), SEEDS[0], "again") == answers[0]


async def test_the_engines_cap_leaves_a_constrained_answer_whole(
    local_engine: SharedEngine, vllm_server: str
) -> None:
    """Capped at 2 tokens, the engines still finish each choice (most take more): the choices
    bound the answer, and a cut one would be none of them."""
    async with RemoteVllmEngine(vllm_server, SERVED_NAME, api_key=API_KEY, max_tokens=2) as remote:
        for engine in (local_engine.capped_at(2), remote):
            answers = [await answer(engine, Choice(VERDICTS), seed, "capped") for seed in SEEDS]
            assert set(answers) <= set(VERDICTS), answers


async def test_a_json_schema_is_refused(local_engine: Engine) -> None:
    schema = JsonSchema({"type": "object"})
    async with RemoteVllmEngine(NOWHERE, "served-name") as remote:
        for engine in (local_engine, remote):
            with pytest.raises(InvalidInput, match="JSON schema"):
                await answer(engine, schema, 0, "json")


async def test_a_bad_pattern_or_an_empty_choice_is_refused(local_engine: Engine) -> None:
    with pytest.raises(InvalidInput, match="not a regular expression"):
        await answer(local_engine, Regex("(yes"), 0, "bad-regex")
    with pytest.raises(InvalidInput, match="needs options"):
        await answer(local_engine, Choice([]), 0, "no-choice")
