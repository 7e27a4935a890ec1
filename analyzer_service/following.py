"""Following one job: its stored events, then live ones, until its terminal event.

Separate from ``JobManager`` because it only reads: it needs the store and the event bus, none
of the queue, leases or running tasks, and it works the same on any replica, whichever one runs
the job. It heals whatever live news went missing by reading the store again, and pauses (rather
than ends) while the database is away for a moment.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator

from analyzer_service.events import EventBus
from analyzer_service.outages import Counts, outlast
from analyzer_service.store import FINISHED_STATES, Event, JobStore, is_terminal

# A follower re-reads the store this often even without live events; it heals any live event
# that was lost (a publisher cancelled between storing and publishing, a listener reconnecting).
FOLLOW_POLL_S = 5.0
REPLAY_BATCH = 500


async def follow(
    store: JobStore, bus: EventBus, waits: Counts, job_id: str, after_sequence: int
) -> AsyncIterator[Event]:
    """Stored events after ``after_sequence``, then live ones, until the terminal event.

    Live news is either a whole event (stored by this replica) or only a job and sequence
    (stored by another replica): then the follower reads it from the store. Waits for the
    database while it is away are counted in ``waits``.
    """
    last = after_sequence
    while True:
        with bus.subscribe(job_id) as live:
            # Subscribed before reading the store: whatever the read misses arrives live.
            while True:
                # The database away for a moment (a restart) pauses the stream.
                job = await outlast(lambda: store.get_job(job_id), "following a job", waits)
                batch = await outlast(
                    functools.partial(store.list_events, job_id, last, REPLAY_BATCH),
                    "following a job",
                    waits,
                )
                for event in batch:
                    yield event
                    last = event.sequence
                    if is_terminal(event):
                        return
                if len(batch) < REPLAY_BATCH:
                    break
            if job is not None and job.state in FINISHED_STATES:
                # State and terminal event are stored together: nothing more will come.
                return
            while (news := await live.get(FOLLOW_POLL_S)) is not None:
                if news.sequence <= last:
                    continue
                if news.sequence > last + 1 or news.WhichOneof("event") is None:
                    break  # a gap, or news without its body: the store has it
                yield news
                last = news.sequence
                if is_terminal(news):
                    return
