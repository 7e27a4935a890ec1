"""One inference thread per service; frames from every source and Detect stream meet here.

Backends are not thread-safe and a model is fastest fed in batches, so all inference goes
through one thread. While more than one producer is active it waits up to ``max_wait_s`` (a few
milliseconds) to fill a batch; alone, a frame goes straight in.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from detector_service import memory
from detector_service.backends.base import DetectorBackend, Image
from detector_service.detections import Detections

log = logging.getLogger(__name__)


@dataclass
class _Job:
    image: Image
    future: concurrent.futures.Future[tuple[Detections, float]] = field(
        default_factory=concurrent.futures.Future
    )


class Overloaded(RuntimeError):
    """More frames are waiting for inference than the batcher holds."""


class InferenceBatcher:
    def __init__(
        self,
        backend: DetectorBackend,
        *,
        max_wait_s: float = 0.004,
        max_pending: int = 256,
        on_batch: Callable[[float, int], None] | None = None,
        release_after_s: float | None = None,
        on_release: Callable[[], None] | None = None,
    ) -> None:
        self.backend = backend
        #: Called on the inference thread after each successful batch with (seconds, frames).
        self.on_batch = on_batch
        self.max_wait_s = max_wait_s
        #: Seconds without a frame after which the backend frees its model (None: never).
        self.release_after_s = release_after_s
        #: Times the model was released for being idle.
        self.on_release = on_release
        self._jobs: queue.Queue[_Job | None] = queue.Queue(maxsize=max_pending)
        self._producers = 0
        self._lock = threading.Lock()
        #: Consecutive failed batches; the service reports NOT_SERVING while it is high.
        self.failure_streak = 0
        self.errors = 0
        self.batches = 0
        self.frames = 0
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self._thread.start()

    def add_producer(self) -> None:
        with self._lock:
            self._producers += 1

    def remove_producer(self) -> None:
        with self._lock:
            self._producers -= 1

    def submit(self, image: Image) -> concurrent.futures.Future[tuple[Detections, float]]:
        """Queue one frame; the future gives its detections and the batch's model time in ms."""
        job = _Job(image)
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            raise Overloaded("inference queue is full") from None
        return job.future

    def detect(self, image: Image, timeout: float = 30.0) -> tuple[Detections, float]:
        """Blocking form of ``submit`` for worker threads."""
        return self.submit(image).result(timeout)

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=10)
        self.backend.close()

    def _gather(self, first: _Job) -> list[_Job] | None:
        batch = [first]
        deadline = time.monotonic() + (self.max_wait_s if self._producers > 1 else 0.0)
        while len(batch) < self.backend.max_batch:
            remaining = deadline - time.monotonic()
            try:
                job = (
                    self._jobs.get(timeout=remaining) if remaining > 0 else self._jobs.get_nowait()
                )
            except queue.Empty:
                break
            if job is None:
                self._jobs.put(None)  # let the loop see the stop after this batch
                break
            batch.append(job)
        return batch

    def _next(self, in_use: bool) -> _Job | None:
        """The next job; while the model is in use, release it once idle for release_after_s."""
        if not in_use or self.release_after_s is None:
            return self._jobs.get()
        try:
            return self._jobs.get(timeout=self.release_after_s)
        except queue.Empty:
            pass
        if self.backend.release() and self.on_release is not None:
            self.on_release()
        # The frames and buffers of the streams that stopped are free now too.
        memory.trim()
        log.info("no frames for %g s: model and buffers released", self.release_after_s)
        return self._jobs.get()

    def _run(self) -> None:
        # The model was loaded with the backend; an idle service gives its memory back.
        in_use = True
        while True:
            first = self._next(in_use)
            if first is None:
                return
            in_use = True
            batch = self._gather(first) or [first]
            batch = [job for job in batch if job.future.set_running_or_notify_cancel()]
            if not batch:
                continue
            started = time.perf_counter()
            try:
                results = self.backend.detect([job.image for job in batch])
            except Exception as exc:
                self.failure_streak += 1
                self.errors += 1
                log.warning("detection failed for a batch of %d: %s", len(batch), exc)
                for job in batch:
                    job.future.set_exception(exc)
                continue
            elapsed_ms = (time.perf_counter() - started) * 1000
            if self.on_batch is not None:
                self.on_batch(elapsed_ms / 1000, len(batch))
            self.failure_streak = 0
            self.batches += 1
            self.frames += len(batch)
            for job, result in zip(batch, results, strict=True):
                job.future.set_result((result, elapsed_ms / len(batch)))
