"""Watch-rule checks off the frame path: a bounded queue in front of the analyzer.

The processing threads hand a check over (``submit``) and go on with the next frame; the checks
run on the event loop, a few at a time (``watch_rule_concurrency``: the analyzer's scheduler shares
its engine fairly, so several in flight keep it busy without one camera starving another). The
pictures are encoded to JPEG in a worker thread. A queue that is full drops its oldest check
(the stalest moment), counts it and gives the rule back its budget: a stalled analyzer costs
checks, never frames. A check that fails (the analyzer down, slow or refusing) tells its rule why;
its budget is given back too, and the rule's next candidate, once its interval has passed, tries
again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from detector_service.annotate import encode_jpeg
from detector_service.backends.base import Image
from vigil.common.v1 import common_pb2
from vigil.core.errors import VigilError
from vigil.sdk.analyzer import AsyncAnalyzerClient
from vigil.sdk.model_types import Picture, RuleAnswer, Sampling

log = logging.getLogger(__name__)

# Pictures go to the model at most this wide or high: the model sees 896x896 (Gemma 3), and a
# 4K frame would cost the network and the analyzer's decoder for nothing.
MAX_PICTURE_SIDE = 1280
PICTURE_QUALITY = 85


class Outcome(Protocol):
    """What the rule's source makes of its check (``watch_rules.RuleWatch``)."""

    def answered(self, job: CheckJob, answer: RuleAnswer, snapshot: bytes) -> None: ...

    def failed(self, job: CheckJob, error: str) -> None: ...

    def dropped(self, job: CheckJob) -> None: ...


@dataclass(frozen=True, slots=True)
class CheckJob:
    """One model call for one rule: the candidate moment's pictures and what the frame showed."""

    outcome: Outcome
    source_id: str
    rule_id: str
    condition: str
    # Copies of recent frames of the moment (capture time in ns), oldest first; the last is it.
    frames: tuple[tuple[Image, int], ...]
    # The candidate frame's capture time: when the budget was spent.
    time_ns: int
    # The objects that made it a candidate, and the areas they stood in.
    detections: tuple[common_pb2.Detection, ...]
    zones: tuple[str, ...]


def pictures(frames: Sequence[tuple[Image, int]]) -> list[Picture]:
    """The frames as JPEGs labelled by their age ("2.0 s before", ..., "now"); CPU work."""
    newest = frames[-1][1]
    result = []
    for image, time_ns in frames:
        height, width = image.shape[:2]
        scale = MAX_PICTURE_SIDE / max(height, width)
        if scale < 1:
            size = (round(width * scale), round(height * scale))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA).astype(np.uint8)
        age = (newest - time_ns) / 1e9
        label = "now" if time_ns == newest else f"{age:.1f} s before"
        result.append(Picture(encode_jpeg(image, PICTURE_QUALITY), label))
    return result


class RuleChecker:
    """The service's one queue of rule checks and the tasks that send them to the analyzer.

    ``client`` None: no analyzer is configured; rules still count their candidates, and say so.
    Lives on the event loop; ``submit`` may be called from any thread.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        client: AsyncAnalyzerClient | None,
        *,
        queue_size: int,
        concurrency: int,
        timeout_s: float,
        sampling: Sampling | None,
    ) -> None:
        self.loop = loop
        self.client = client
        self.queue_size = queue_size
        self.timeout_s = timeout_s
        self.sampling = sampling
        self._queue: collections.deque[CheckJob] = collections.deque()
        self._ready = asyncio.Event()
        #: Checks dropped because the queue was full.
        self.dropped = 0
        self._tasks = [loop.create_task(self._work()) for _ in range(concurrency)]

    @property
    def enabled(self) -> bool:
        return self.client is not None

    def submit(self, job: CheckJob) -> None:
        """Queue a check (any thread; never blocks)."""
        try:
            self.loop.call_soon_threadsafe(self._put, job)
        except RuntimeError:  # the loop is closed: the service is going away
            job.outcome.dropped(job)

    def _put(self, job: CheckJob) -> None:
        if len(self._queue) >= self.queue_size:
            stale = self._queue.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.warning("watch-rule checks behind the analyzer: %d dropped", self.dropped)
            stale.outcome.dropped(stale)
        self._queue.append(job)
        self._ready.set()

    async def _work(self) -> None:
        while True:
            while not self._queue:
                self._ready.clear()
                await self._ready.wait()
            await self._check(self._queue.popleft())

    async def _check(self, job: CheckJob) -> None:
        assert self.client is not None  # jobs are submitted only while enabled
        try:
            shown = await asyncio.to_thread(pictures, job.frames)
            answer = await self.client.check_watch_rule(
                rule_id=job.rule_id,
                source_id=job.source_id,
                condition=job.condition,
                pictures=shown,
                sampling=self.sampling,
                timeout_s=self.timeout_s,
            )
        except VigilError as exc:
            job.outcome.failed(job, f"the analyzer's check failed: {exc}")
        except Exception as exc:  # a check must never take its worker down
            log.exception("watch rule %s of %s: check failed", job.rule_id, job.source_id)
            job.outcome.failed(job, f"the check failed: {type(exc).__name__}: {exc}")
        else:
            job.outcome.answered(job, answer, shown[-1].jpeg)

    async def close(self) -> None:
        """Stop checking; checks still queued are dropped (their rules are going away too)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while self._queue:
            job = self._queue.popleft()
            job.outcome.dropped(job)
        if self.client is not None:
            await self.client.close()
