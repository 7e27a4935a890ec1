"""The engine monitor fails an engine that is down at once, but not one that is only slow to
answer its health check: a busy CPU vLLM server answers late while it generates, and failing it
would cancel every generation running on a working engine."""

from __future__ import annotations

import asyncio

import pytest

from analyzer_service.engine import SLOW_CHECKS, EngineMonitor
from tests.analyzer_service.helpers import FakeEngine

TIMEOUT_S = 0.05


class ScriptedHealth(FakeEngine):
    """Answers its health checks as scripted: "late" (after the monitor's timeout), "down"
    (raises, as a refused connection does), "unhealthy" (False) or "ok"."""

    def __init__(self, answers: list[str]) -> None:
        super().__init__()
        self.answers = answers

    async def health(self) -> bool:
        answer = self.answers.pop(0)
        if answer == "late":
            await asyncio.sleep(TIMEOUT_S * 10)
        if answer == "down":
            raise ConnectionRefusedError("connection refused")
        return answer != "unhealthy"


async def verdicts(answers: list[str]) -> list[bool]:
    """The monitor's state after each check."""
    monitor = EngineMonitor(ScriptedHealth(list(answers)), interval_s=1.0, timeout_s=TIMEOUT_S)
    states = []
    for _ in answers:
        await monitor._set(await monitor.check())
        states.append(monitor.healthy)
    return states


async def test_late_answers_fail_the_engine_only_when_they_keep_coming() -> None:
    late_run = ["late"] * (SLOW_CHECKS - 1)
    assert await verdicts([*late_run, "ok", *late_run]) == [True] * (2 * SLOW_CHECKS - 1)
    assert await verdicts(["late"] * SLOW_CHECKS) == [True] * (SLOW_CHECKS - 1) + [False]


async def test_a_late_answer_does_not_bring_a_failed_engine_back() -> None:
    states = await verdicts(["down", "late", "ok"])
    assert states == [False, False, True]


@pytest.mark.parametrize("answer", ["down", "unhealthy"])
async def test_an_engine_down_or_unhealthy_fails_at_once(answer: str) -> None:
    assert await verdicts(["ok", answer, "ok"]) == [True, False, True]


async def test_work_running_on_the_engine_survives_late_answers() -> None:
    engine = ScriptedHealth(["late"] * (SLOW_CHECKS - 1) + ["ok"])
    monitor = EngineMonitor(engine, interval_s=0.01, timeout_s=TIMEOUT_S)
    done = asyncio.Event()

    async def work() -> str:
        async with monitor.watch():
            await done.wait()
            return "finished"

    running = asyncio.create_task(work())
    for _ in range(SLOW_CHECKS):
        await monitor._set(await monitor.check())
    done.set()
    assert await running == "finished"
