"""The engine scheduler: priority classes first, keys in turn within a class, bounded queues,
and slots that always come back.

The unit tests drive ``ScheduledEngine`` over a small in-test engine whose generations each wait
for the test to let them finish, so the order the scheduler starts them in is all that is seen.
The last test runs the analyzer with the real model: analysis and chat go through the scheduler.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable

import pytest

from analyzer_service.engine import Delta, EngineLimits, GenerateRequest, Lifecycle, Priority
from analyzer_service.metrics import AnalyzerMetrics
from analyzer_service.scheduler import ScheduledEngine
from analyzer_service.settings import AnalyzerSettings
from tests.analyzer_service.helpers import StartServer
from tests.analyzer_service.model.support import CHAT_TOKENS, SUMMARY_TOKENS, Recording, analyse
from tests.llm import SharedEngine
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.core.errors import ERRORS, Cancelled, Overloaded


class GatedEngine(Lifecycle):
    """Each generation starts (``started``), waits for ``finish(id)``, then yields one delta."""

    model = "gated/model"
    limits = EngineLimits()

    def __init__(self) -> None:
        self.started: list[str] = []
        self.closed: list[str] = []
        self.aborted: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.fail: set[str] = set()

    def finish(self, request_id: str) -> None:
        self.gates.setdefault(request_id, asyncio.Event()).set()

    async def deltas(self, request: GenerateRequest) -> AsyncGenerator[Delta, None]:
        rid = request.request_id
        self.started.append(rid)
        try:
            await self.gates.setdefault(rid, asyncio.Event()).wait()
            if rid in self.fail:
                raise RuntimeError(f"{rid} failed in the engine")
            yield Delta(rid, 1)
        finally:
            self.closed.append(rid)

    async def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)

    async def health(self) -> bool:
        return True


def scheduled(
    engine: GatedEngine, *, concurrency: int = 1, max_waiting: int = 64, per_key: int = 64
) -> ScheduledEngine:
    return ScheduledEngine(
        engine,
        concurrency=concurrency,
        max_waiting=max_waiting,
        per_key=per_key,
        metrics=AnalyzerMetrics(),
    )


def ask(rid: str, priority: Priority, key: str = "") -> GenerateRequest:
    return GenerateRequest(rid, "prompt", [], 4, priority=priority, fair_key=key)


async def drain(scheduler: ScheduledEngine, request: GenerateRequest) -> list[str]:
    return [delta.text async for delta in scheduler.deltas(request)]


async def until(condition: Callable[[], bool]) -> None:
    """Let the loop run until ``condition`` holds (counted in loop turns, not in time)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


async def refusal(scheduler: ScheduledEngine, request: GenerateRequest) -> Overloaded:
    """The error ``request`` is refused with at once (a request let in would wait instead)."""
    task = asyncio.create_task(drain(scheduler, request))
    try:
        await until(task.done)
    finally:
        task.cancel()
    error = task.exception()
    assert isinstance(error, Overloaded), error
    return error


class Runner:
    """Requests consumed in tasks of their own, as the service's callers consume them."""

    def __init__(self, scheduler: ScheduledEngine, engine: GatedEngine) -> None:
        self.scheduler = scheduler
        self.engine = engine
        self.tasks: dict[str, asyncio.Task[list[str]]] = {}

    async def submit(self, request: GenerateRequest) -> None:
        """Start consuming ``request`` and wait until it runs or waits in the scheduler."""
        before = sum(self.scheduler.waiting().values()) + len(self.engine.started)
        self.tasks[request.request_id] = asyncio.create_task(drain(self.scheduler, request))
        await until(
            lambda: sum(self.scheduler.waiting().values()) + len(self.engine.started) > before
        )

    async def run_all(self) -> list[str]:
        """Let every generation finish, one at a time in the order they start."""

        def unfinished() -> list[str]:
            return [r for r in self.engine.started if not self.engine.gates[r].is_set()]

        def settled() -> bool:
            return all(t.done() for t in self.tasks.values()) or bool(unfinished())

        while not all(t.done() for t in self.tasks.values()):
            await until(settled)
            if waiting := unfinished():
                self.engine.finish(waiting[0])
        results = await asyncio.gather(*self.tasks.values())
        assert all(len(r) == 1 for r in results)
        return self.engine.started


def sample(scheduler: ScheduledEngine, name: str, priority: Priority) -> float | None:
    labels = {"priority": priority.name.lower()}
    return scheduler.metrics.registry.get_sample_value(name, labels)


async def test_a_verification_waiting_behind_analyses_runs_when_a_slot_frees() -> None:
    engine = GatedEngine()
    scheduler = scheduled(engine, concurrency=2)
    runner = Runner(scheduler, engine)
    for rid in ("a1", "a2", "a3", "a4"):
        await runner.submit(ask(rid, Priority.ANALYSIS, rid))
    await runner.submit(ask("rule", Priority.WATCH_RULE))
    await runner.submit(ask("chat", Priority.CHAT))
    await runner.submit(ask("verify", Priority.VERIFICATION))
    assert engine.started == ["a1", "a2"]  # two slots
    assert scheduler.waiting() == {
        Priority.VERIFICATION: 1,
        Priority.CHAT: 1,
        Priority.WATCH_RULE: 1,
        Priority.ANALYSIS: 2,
    }
    assert sample(scheduler, "vigil_analyzer_engine_waiting", Priority.ANALYSIS) == 2
    assert scheduler.metrics.registry.get_sample_value("vigil_analyzer_engine_running") == 2

    engine.finish("a1")
    await until(lambda: len(engine.started) == 3)
    assert engine.started[2] == "verify"
    assert await runner.run_all() == ["a1", "a2", "verify", "chat", "rule", "a3", "a4"]
    assert scheduler.waiting() == dict.fromkeys(Priority, 0)
    assert scheduler.running == 0
    wait_count = "vigil_analyzer_engine_wait_seconds_count"
    assert sample(scheduler, wait_count, Priority.ANALYSIS) == 4
    assert sample(scheduler, wait_count, Priority.VERIFICATION) == 1


async def test_keys_of_one_class_take_turns() -> None:
    engine = GatedEngine()
    scheduler = scheduled(engine)
    runner = Runner(scheduler, engine)
    await runner.submit(ask("hold", Priority.WATCH_RULE, "other"))
    for n in range(1, 5):
        await runner.submit(ask(f"busy{n}", Priority.WATCH_RULE, "busy-rule"))
    for n in range(1, 3):
        await runner.submit(ask(f"quiet{n}", Priority.WATCH_RULE, "quiet-rule"))
    # No key: each request is a key of its own.
    await runner.submit(ask("alone", Priority.WATCH_RULE))
    assert await runner.run_all() == [
        "hold",
        "busy1",
        "quiet1",
        "alone",
        "busy2",
        "quiet2",
        "busy3",
        "busy4",
    ]


async def test_a_request_cancelled_while_waiting_leaves_the_queue() -> None:
    engine = GatedEngine()
    scheduler = scheduled(engine)
    runner = Runner(scheduler, engine)
    await runner.submit(ask("hold", Priority.ANALYSIS))
    await runner.submit(ask("gone", Priority.CHAT, "job"))
    await runner.submit(ask("stays", Priority.CHAT, "job"))
    runner.tasks["gone"].cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner.tasks.pop("gone")
    assert scheduler.waiting()[Priority.CHAT] == 1

    # Aborting a waiting request ends its iterator with CANCELLED; the engine never sees it.
    await runner.submit(ask("aborted", Priority.CHAT, "job"))
    await scheduler.abort("aborted")
    with pytest.raises(Cancelled):
        await runner.tasks.pop("aborted")
    assert scheduler.waiting()[Priority.CHAT] == 1
    assert engine.aborted == []

    assert await runner.run_all() == ["hold", "stays"]
    assert scheduler.running == 0
    assert scheduler.waiting() == dict.fromkeys(Priority, 0)


async def test_full_queues_refuse_with_overloaded() -> None:
    engine = GatedEngine()
    scheduler = scheduled(engine, max_waiting=3, per_key=2)
    runner = Runner(scheduler, engine)
    await runner.submit(ask("hold", Priority.ANALYSIS))
    await runner.submit(ask("a1", Priority.ANALYSIS, "job-1"))
    await runner.submit(ask("a2", Priority.ANALYSIS, "job-1"))
    # One key may not fill its class's queue...
    per_key = await refusal(scheduler, ask("a3", Priority.ANALYSIS, "job-1"))
    assert "job-1" in str(per_key)
    # ...but another key may, up to the class's bound.
    await runner.submit(ask("b1", Priority.ANALYSIS, "job-2"))
    full = await refusal(scheduler, ask("c1", Priority.ANALYSIS, "job-3"))
    assert ERRORS[full.code].status.name == "RESOURCE_EXHAUSTED"
    assert ERRORS[full.code].retryable
    # Each class has its own bound: chat still gets in.
    await runner.submit(ask("chat", Priority.CHAT, "job-1"))
    assert scheduler.waiting()[Priority.ANALYSIS] == 3
    assert await runner.run_all() == ["hold", "chat", "a1", "b1", "a2"]


async def test_a_closed_or_failed_generation_frees_its_slot() -> None:
    engine = GatedEngine()
    scheduler = scheduled(engine)
    runner = Runner(scheduler, engine)

    # The caller closes the stream after the first delta: the engine's stream is closed and
    # the next request gets the slot.
    first = scheduler.deltas(ask("early", Priority.CHAT))
    engine.finish("early")
    async with contextlib.aclosing(first) as stream:
        assert (await anext(stream)).text == "early"
        await runner.submit(ask("next", Priority.ANALYSIS))
        assert engine.started == ["early"]
    assert engine.closed == ["early"]
    await until(lambda: engine.started == ["early", "next"])

    # A running request aborted goes to the engine; the engine failing frees the slot too.
    await scheduler.abort("next")
    assert engine.aborted == ["next"]
    engine.fail.add("next")
    await runner.submit(ask("after", Priority.ANALYSIS))
    engine.finish("next")
    with pytest.raises(RuntimeError):
        await runner.tasks.pop("next")
    await until(lambda: engine.started[-1] == "after")
    assert await runner.run_all() == ["early", "next", "after"]
    assert scheduler.running == 0


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_analysis_and_chat_go_through_the_scheduler(
    start_server: StartServer,
    settings: AnalyzerSettings,
    llm_engine: SharedEngine,
    short_bytes: bytes,
) -> None:
    engine = Recording(llm_engine)
    custom = settings.model_copy(
        update={"max_tokens": SUMMARY_TOKENS, "chat_max_tokens": CHAT_TOKENS}
    )
    async with analyse(start_server, custom, engine, short_bytes) as analysed:
        assert analysed.events[-1].complete.result.summary
        replies = [
            r
            async for r in analysed.stub.Chat(
                pb.ChatRequest(job_id=analysed.job_id, question="What happens?")
            )
        ]
        assert replies[-1].done
        assert replies[-1].completion_tokens == CHAT_TOKENS
        scheduler = analysed.server.scheduler
        assert scheduler is not None
        assert scheduler.engine is engine
        summary, question = engine.requests
        assert (summary.priority, summary.fair_key) == (Priority.ANALYSIS, analysed.job_id)
        assert (question.priority, question.fair_key) == (Priority.CHAT, analysed.job_id)
        wait_count = "vigil_analyzer_engine_wait_seconds_count"
        assert sample(scheduler, wait_count, Priority.ANALYSIS) == 1
        assert sample(scheduler, wait_count, Priority.CHAT) == 1
        assert scheduler.running == 0
        assert scheduler.waiting() == dict.fromkeys(Priority, 0)
