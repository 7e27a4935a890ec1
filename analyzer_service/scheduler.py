"""One scheduler in front of the engine: who generates next when requests wait for the model.

``ScheduledEngine`` is an ``Engine`` around the real one, so every caller goes through it
unchanged. At most ``concurrency`` generations run in the engine at once (vLLM batches them, so
more than one); the others wait here. A free slot goes to the waiting request of the lowest
``Priority`` (an alert's verification, then chat, then watch rules, then uploaded analyses), and
within a priority the keys (``GenerateRequest.fair_key``: a source, a rule, a job; else the
request id) take turns, so one busy key cannot starve the others. The order is strict between
priorities: a steady stream of verifications holds chat back, by design.

The waiting requests are bounded twice: at most ``max_waiting`` per priority and ``per_key`` per
key of a priority. One more is refused at once with OVERLOADED (RESOURCE_EXHAUSTED, retryable),
rather than queued behind work it may never get ahead of; the per-key bound keeps one flooding
key from filling its priority's queue for everyone else.

A waiting request that is cancelled (its caller gone, the iterator closed) leaves the queue; a
running one frees its slot when its iterator ends, however it ends. The request's ``priority``
goes on to the engine, which hands it to vLLM's own scheduler (honoured when vLLM runs with
``scheduling_policy="priority"``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import time
from collections.abc import AsyncGenerator

from analyzer_service.engine import (
    Delta,
    Engine,
    EngineLimits,
    GenerateRequest,
    Lifecycle,
    Priority,
)
from analyzer_service.metrics import AnalyzerMetrics
from analyzer_service.settings import AnalyzerSettings
from vigil.core.errors import Cancelled, Overloaded


def priority_of(request: GenerateRequest) -> Priority:
    """The request's class; a priority outside the classes counts as the nearest one."""
    return Priority(min(max(request.priority, min(Priority)), max(Priority)))


@dataclasses.dataclass(eq=False)
class Ticket:
    """A request waiting for a slot; ``admitted`` resolves when it gets one."""

    request: GenerateRequest
    priority: Priority
    key: str
    since: float
    admitted: asyncio.Future[None]
    running: bool = False


class FairQueue:
    """The waiting tickets: by priority, then round-robin between keys, first come first within
    a key. Keys of a priority are kept in turn order: a key that is served moves to the back."""

    def __init__(self, *, max_waiting: int, per_key: int) -> None:
        self.max_waiting = max_waiting
        self.per_key = per_key
        self._classes: dict[Priority, collections.OrderedDict[str, collections.deque[Ticket]]] = {
            p: collections.OrderedDict() for p in Priority
        }
        self._sizes = dict.fromkeys(Priority, 0)

    def waiting(self, priority: Priority) -> int:
        return self._sizes[priority]

    def push(self, ticket: Ticket) -> None:
        """Queue ``ticket`` last of its key; refused with OVERLOADED when a bound is reached."""
        name = ticket.priority.name.lower()
        if self._sizes[ticket.priority] >= self.max_waiting:
            raise Overloaded(
                f"{self.max_waiting} {name} requests already wait for the model; try again later"
            )
        keys = self._classes[ticket.priority]
        tickets = keys.setdefault(ticket.key, collections.deque())
        if len(tickets) >= self.per_key:
            raise Overloaded(
                f"{self.per_key} {name} requests of {ticket.key!r} already wait for the model; "
                "try again later"
            )
        tickets.append(ticket)
        self._sizes[ticket.priority] += 1

    def pop(self) -> Ticket | None:
        """The next ticket to run: the first key's first of the lowest priority waiting."""
        for priority, keys in self._classes.items():
            if not keys:
                continue
            key, tickets = next(iter(keys.items()))
            ticket = tickets.popleft()
            if tickets:
                keys.move_to_end(key)
            else:
                del keys[key]
            self._sizes[priority] -= 1
            return ticket
        return None

    def remove(self, ticket: Ticket) -> bool:
        """Take ``ticket`` out (its key keeps its turn); False if it was not waiting."""
        keys = self._classes[ticket.priority]
        tickets = keys.get(ticket.key)
        if tickets is None or ticket not in tickets:
            return False
        tickets.remove(ticket)
        if not tickets:
            del keys[ticket.key]
        self._sizes[ticket.priority] -= 1
        return True


class ScheduledEngine(Lifecycle):
    """``engine`` with its generations admitted by priority and in turns (see the module).

    Its life is the wrapped engine's owner's business: entering this one starts nothing.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        concurrency: int,
        max_waiting: int,
        per_key: int,
        metrics: AnalyzerMetrics,
    ) -> None:
        self.engine = engine
        self.concurrency = concurrency
        self.metrics = metrics
        self.queue = FairQueue(max_waiting=max_waiting, per_key=per_key)
        self.running = 0
        self._waiting: dict[str, Ticket] = {}
        metrics.watch_scheduler(self.waiting, lambda: self.running)

    @classmethod
    def from_settings(
        cls, engine: Engine, settings: AnalyzerSettings, metrics: AnalyzerMetrics
    ) -> ScheduledEngine:
        return cls(
            engine,
            concurrency=settings.engine_concurrency,
            max_waiting=settings.engine_max_waiting,
            per_key=settings.engine_max_waiting_per_key,
            metrics=metrics,
        )

    @property
    def model(self) -> str:
        return self.engine.model

    @property
    def limits(self) -> EngineLimits:
        return self.engine.limits

    def waiting(self) -> dict[Priority, int]:
        """Requests waiting for a slot now, per priority."""
        return {p: self.queue.waiting(p) for p in Priority}

    async def deltas(self, request: GenerateRequest) -> AsyncGenerator[Delta, None]:
        ticket = Ticket(
            request=request,
            priority=priority_of(request),
            key=request.fair_key or request.request_id,
            since=time.monotonic(),
            admitted=asyncio.get_running_loop().create_future(),
        )
        self.queue.push(ticket)
        self._waiting[request.request_id] = ticket
        self._dispatch()
        try:
            await ticket.admitted
        except BaseException:
            # Cancelled or aborted while waiting, or admitted just as the caller went away.
            self._withdraw(ticket)
            raise
        try:
            async with contextlib.aclosing(self.engine.deltas(request)) as stream:
                async for delta in stream:
                    yield delta
        finally:
            self._release()

    async def abort(self, request_id: str) -> None:
        """A waiting request leaves the queue (its iterator raises CANCELLED); a running one is
        aborted in the engine."""
        ticket = self._waiting.get(request_id)
        if ticket is not None and not ticket.admitted.done():
            self._withdraw(ticket)
            ticket.admitted.set_exception(Cancelled(f"the request {request_id} was aborted"))
            return
        await self.engine.abort(request_id)

    async def health(self) -> bool:
        return await self.engine.health()

    def _dispatch(self) -> None:
        """Admit waiting requests while slots are free."""
        while self.running < self.concurrency:
            ticket = self.queue.pop()
            if ticket is None:
                return
            self._forget(ticket)
            if ticket.admitted.done():
                # Its waiter was cancelled and has not run yet: it cleans up after itself.
                continue
            ticket.running = True
            self.running += 1
            self.metrics.engine_waited(ticket.priority, time.monotonic() - ticket.since)
            ticket.admitted.set_result(None)

    def _withdraw(self, ticket: Ticket) -> None:
        self._forget(ticket)
        if ticket.running:
            self._release()
        else:
            self.queue.remove(ticket)

    def _release(self) -> None:
        self.running -= 1
        self._dispatch()

    def _forget(self, ticket: Ticket) -> None:
        if self._waiting.get(ticket.request.request_id) is ticket:
            del self._waiting[ticket.request.request_id]
