"""The in-process event bus: live fan-out per job, bounded per subscriber."""

from __future__ import annotations

from analyzer_service.events import EventBus, LocalEventBus
from analyzer_service.store import Event
from vigil.analyzer.v1 import analyzer_service_pb2 as pb


def event(job_id: str, sequence: int) -> Event:
    return Event(job_id=job_id, sequence=sequence, progress=pb.AnalysisProgress())


async def test_subscribers_get_their_jobs_events_only() -> None:
    bus: EventBus = LocalEventBus(subscriber_queue=8)
    with bus.subscribe("a") as first, bus.subscribe("a") as second, bus.subscribe("b") as other:
        bus.publish(event("a", 1))
        got_first = await first.get(1)
        got_second = await second.get(1)
        assert got_first is not None
        assert got_second is not None
        assert got_first.sequence == got_second.sequence == 1
        assert await other.get(0.01) is None


async def test_a_slow_subscriber_is_cut_off_not_buffered_without_bound() -> None:
    bus = LocalEventBus(subscriber_queue=2)
    with bus.subscribe("a") as slow:
        for sequence in range(1, 6):
            bus.publish(event("a", sequence))
        assert slow.lagged
        first, second = await slow.get(1), await slow.get(1)
        assert first is not None
        assert second is not None
        assert (first.sequence, second.sequence) == (1, 2)
        # Drained and lagged: the caller must catch up from the store.
        assert await slow.get(1) is None


async def test_leaving_unsubscribes() -> None:
    bus = LocalEventBus(subscriber_queue=2)
    with bus.subscribe("a"):
        pass
    bus.publish(event("a", 1))  # nobody listening: no error, nothing kept
    assert bus._subscribers == {}
