"""Alert verification and watch-rule checks with the real (tiny, random) model: every answer
parses into its schema, a seed makes an answer repeatable, and the seeds below give each verdict
and each rule answer. Bad requests are refused before the model is asked; without a model the
calls are refused with MODEL_NOT_CONFIGURED.

The seeds hold for these pictures and prompts with the tiny Gemma 3 of ``vigil.devtools``: a
change to either may move them (find new ones by asking with seeds 0, 1, 2... and keeping the
first of each answer).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest

from analyzer_service.server import AnalyzerServer
from analyzer_service.settings import AnalyzerSettings
from analyzer_service.verification import MAX_REASON_CHARS, MAX_SEES_CHARS
from tests.analyzer_service.helpers import StartServer
from tests.analyzer_service.model.pictures import incident_pictures, jpeg, rule_pictures
from tests.llm import SERVED_NAME, SharedEngine
from vigil.core.errors import InvalidInput, ModelNotConfigured, TooLarge, VigilError
from vigil.sdk import AsyncAnalyzerClient, Picture, Sampling, Verification

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

VERDICT_SEEDS = {"confirmed": 0, "uncertain": 1, "rejected": 13}
RULE_SEEDS = {True: 0, False: 4}
FENCE = "someone climbs the fence"


@dataclasses.dataclass
class Analyzer:
    server: AnalyzerServer
    client: AsyncAnalyzerClient

    async def verify(
        self, seed: int | None = None, pictures: list[Picture] | None = None, **fields: str
    ) -> Verification:
        request = {"incident_id": "inc-1", "source_id": "cam-1", "class_name": "gun", **fields}
        return await self.client.verify_incident(
            **request,
            pictures=incident_pictures() if pictures is None else pictures,
            sampling=Sampling(temperature=1.0, seed=seed),
        )

    def metric(self, name: str, **labels: str) -> float:
        value = self.server.metrics.registry.get_sample_value(name, labels)
        return value or 0.0


@pytest.fixture
async def analyzer(
    start_server: StartServer, model_settings: AnalyzerSettings, llm_engine: SharedEngine
) -> AsyncIterator[Analyzer]:
    server = await start_server(model_settings, engine=llm_engine)
    async with AsyncAnalyzerClient(f"127.0.0.1:{server.port}") as client:
        yield Analyzer(server, client)


def assert_valid(verification: Verification) -> None:
    assert verification.verdict in VERDICT_SEEDS
    assert 0 < len(verification.sees) <= MAX_SEES_CHARS
    assert 0 < len(verification.reason) <= MAX_REASON_CHARS
    assert verification.sees == verification.sees.strip()
    assert ";" not in verification.sees + verification.reason
    assert verification.threat_level in (0, 1, 2)
    if verification.verdict == "rejected":
        assert verification.threat_level == 0
    assert verification.model == SERVED_NAME
    assert verification.model_seconds > 0


async def test_each_verdict_comes_from_its_seed_and_a_seed_repeats_its_answer(
    analyzer: Analyzer,
) -> None:
    answers = {verdict: await analyzer.verify(seed) for verdict, seed in VERDICT_SEEDS.items()}
    for verdict, answer in answers.items():
        assert answer.verdict == verdict, answer
        assert_valid(answer)
        assert analyzer.metric("vigil_analyzer_verifications_total", verdict=verdict) == 1
    again = await analyzer.verify(VERDICT_SEEDS["confirmed"])
    assert dataclasses.replace(again, model_seconds=0) == dataclasses.replace(
        answers["confirmed"], model_seconds=0
    )
    assert analyzer.metric("vigil_analyzer_verification_seconds_count") == 4


async def test_rule_checks_answer_yes_and_no_and_are_counted_per_rule(
    analyzer: Analyzer,
) -> None:
    for matched, seed in RULE_SEEDS.items():
        answer = await analyzer.client.check_watch_rule(
            rule_id="fence",
            source_id="cam-1",
            condition=FENCE,
            pictures=rule_pictures(),
            sampling=Sampling(temperature=1.0, seed=seed),
        )
        assert answer.matched is matched
        assert 0 < len(answer.reason) <= MAX_REASON_CHARS
        assert (answer.model, answer.model_seconds > 0) == (SERVED_NAME, True)
    assert analyzer.metric("vigil_analyzer_rule_checks_total", rule_id="fence") == 2
    assert analyzer.metric("vigil_analyzer_rule_matches_total", rule_id="fence") == 1
    assert analyzer.metric("vigil_analyzer_rule_model_seconds_total", rule_id="fence") > 0


async def test_bad_requests_are_refused_before_the_model_is_asked(
    analyzer: Analyzer, llm_engine: SharedEngine
) -> None:
    snapshot = incident_pictures()[0]
    png = Picture(b"\x89PNG\r\n\x1a\n" + snapshot.jpeg, "snapshot")
    cases: list[tuple[dict[str, str], list[Picture], type[VigilError], str]] = [
        ({}, [], InvalidInput, "no pictures"),
        ({}, [snapshot] * 5, InvalidInput, "at most 4"),  # the engine's max_images
        ({}, [png], InvalidInput, "not a JPEG"),
        ({}, [Picture(snapshot.jpeg[:40], "cut")], InvalidInput, "not a readable JPEG"),
        ({}, [Picture(snapshot.jpeg, "x" * 101)], InvalidInput, "longer than 100"),
        ({}, [Picture(snapshot.jpeg, "snap\nshot")], InvalidInput, "control characters"),
        ({"incident_id": ""}, [snapshot], InvalidInput, "incident_id is missing"),
        ({"source_id": "c" * 129}, [snapshot], InvalidInput, "longer than 128"),
        ({"class_name": " "}, [snapshot], InvalidInput, "class_name is empty"),
        ({"class_name": "g" * 65}, [snapshot], InvalidInput, "longer than 64"),
    ]
    before = llm_engine.tokens.total
    for fields, pictures, error, message in cases:
        with pytest.raises(error, match=message):
            await analyzer.verify(pictures=pictures, **fields)
    with pytest.raises(InvalidInput, match="temperature"):
        await analyzer.client.verify_incident(
            incident_id="inc-1",
            source_id="cam-1",
            class_name="gun",
            pictures=[snapshot],
            sampling=Sampling(temperature=3.0),
        )
    for condition, message in [("", "condition is empty"), ("x" * 301, "longer than 300")]:
        with pytest.raises(InvalidInput, match=message):
            await analyzer.client.check_watch_rule(
                rule_id="fence", source_id="cam-1", condition=condition, pictures=[snapshot]
            )
    with pytest.raises(InvalidInput, match="rule_id is missing"):
        await analyzer.client.check_watch_rule(
            rule_id="", source_id="cam-1", condition=FENCE, pictures=[snapshot]
        )
    assert await llm_engine.settled_tokens() == before
    assert analyzer.metric("vigil_analyzer_refusals_total", code="INVALID_ARGUMENT") == 14


async def test_pictures_over_the_settings_limits_are_refused(
    start_server: StartServer, model_settings: AnalyzerSettings, llm_engine: SharedEngine
) -> None:
    big = jpeg((640, 480), (200, 40, 40), (0, 0, 10, 10))
    custom = model_settings.model_copy(
        update={"max_check_pictures": 2, "max_picture_bytes": len(big) - 1}
    )
    server = await start_server(custom, engine=llm_engine)
    async with AsyncAnalyzerClient(f"127.0.0.1:{server.port}") as client:
        analyzer = Analyzer(server, client)
        with pytest.raises(InvalidInput, match="at most 2"):
            await analyzer.verify(pictures=incident_pictures()[:3])
        with pytest.raises(TooLarge, match="larger than"):
            await analyzer.verify(pictures=[Picture(big, "snapshot")])


async def test_without_a_model_both_calls_are_refused(
    start_server: StartServer, settings: AnalyzerSettings
) -> None:
    server = await start_server(settings)  # engine "none"
    async with AsyncAnalyzerClient(f"127.0.0.1:{server.port}") as client:
        with pytest.raises(ModelNotConfigured, match="VIGIL_ANALYZER_ENGINE"):
            await Analyzer(server, client).verify(seed=0)
        with pytest.raises(ModelNotConfigured):
            await client.check_watch_rule(
                rule_id="fence", source_id="cam-1", condition=FENCE, pictures=rule_pictures()
            )
