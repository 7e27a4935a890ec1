"""The frame hub: one detector ``Subscribe`` stream per source, fanned out to all its viewers.

The first viewer of a source opens the stream and the last one to leave closes it, so the detector
sees one subscriber per source however many browsers watch. Each viewer has its own newest-wins
queue: a slow browser loses frames, it never delays the stream or the other viewers. Each frame
is encoded once for all of them (``bridge.frame_messages``).

When the detector cannot be reached or the stream breaks, every viewer gets an error message and
the hub resubscribes with capped exponential backoff; frames resume on the same WebSockets. Errors
that retrying cannot fix (an unknown source, a bad argument) close the viewers instead, with the
close code from ``vigil.core.errors``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator

from bridge.errors import BackendError, translate
from bridge.frame_messages import EncodedFrame, error_message
from vigil.core import source_ids
from vigil.core.backoff import Backoff
from vigil.core.errors import InvalidInput, Unavailable, VigilError
from vigil.core.queues import NewestWinsQueue
from vigil.detector.v1 import detector_service_pb2 as dpb
from vigil.sdk import AsyncDetectorClient, Frame, Source

log = logging.getLogger(__name__)


# WebSocket close reasons must fit in a control frame (123 bytes).
_MAX_REASON = 120
# Close code for viewers of a bridge that is shutting down ("going away").
GOING_AWAY = 1001


class Viewer:
    """One WebSocket's view of a source: its queue of outgoing messages and, once the hub ends
    the view, the close code to send."""

    def __init__(
        self,
        source_id: str,
        extras: frozenset[str],
        queue_size: int,
        base: int,
        *,
        binary: bool = False,
    ) -> None:
        self.source_id = source_id
        self.extras = extras
        self.binary = binary
        # Frames: ``str`` (JSON text) or ``bytes`` (binary viewers); errors are always ``str``.
        self.queue: NewestWinsQueue[str | bytes] = NewestWinsQueue(queue_size)
        self.close_code = 1000
        self.close_reason = ""
        # The source's upstream drop count when this viewer joined.
        self._upstream_base = base

    def dropped(self, upstream: int) -> int:
        """Frames this viewer lost: in its own queue, plus those lost on the shared stream since
        it joined."""
        return self.queue.dropped + upstream - self._upstream_base

    def close(self, code: int, reason: str) -> None:
        self.close_code = code
        self.close_reason = reason[:_MAX_REASON]
        self.queue.close()


class _Feed:
    """The shared stream of one source and the viewers it feeds."""

    def __init__(self, hub: FrameHub, source_id: str, main: bool) -> None:
        self.hub = hub
        self.source_id = source_id
        # The camera's main stream at full size (a feed of its own beside the detection stream's).
        self.main = main
        self.viewers: dict[Viewer, None] = {}  # insertion-ordered set
        # Frames the detector dropped for our stream, summed over resubscriptions.
        self.upstream_dropped = 0
        self.frames = 0
        self._stream_dropped = 0
        self._last_error: str | None = None
        self.task = asyncio.create_task(self._run(), name=f"bridge-feed-{source_id}")

    def join(self, extras: frozenset[str], binary: bool = False) -> Viewer:
        viewer = Viewer(
            self.source_id, extras, self.hub.queue_size, self.upstream_dropped, binary=binary
        )
        if self._last_error is not None:
            # A viewer arriving during an outage learns about it at once.
            viewer.queue.put(self._last_error)
        self.viewers[viewer] = None
        return viewer

    def leave(self, viewer: Viewer) -> None:
        self.viewers.pop(viewer, None)

    async def _run(self) -> None:
        backoff = self.hub.backoff()
        failures = 0
        while True:
            frames_before = self.frames
            # Once viewers know of an outage, the next attempt waits for the channel to connect
            # (gRPC's own reconnect backoff, capped at ``retry_max_s``) instead of failing fast
            # while the channel backs off: frames resume as soon as the detector is back, not a
            # hub backoff plus a channel backoff later.
            failure, details = await self._attempt(wait=failures > 0)
            code, message = failure.code, failure.message
            if self.frames > frames_before:
                backoff.reset()
                failures = 0
            if failure.final:
                log.info("source %s: %s (%s), closing its viewers", self.source_id, message, code)
                self._finish(failure)
                return
            failures += 1
            # Jitter keeps many bridges from hammering a restarted detector in lockstep.
            delay = backoff.next()
            # The first failure of an outage is news; the retries after it are not.
            log.log(
                logging.WARNING if failures == 1 else logging.DEBUG,
                "source %s: stream failed (%s %s); retry %d in %.2f s",
                self.source_id, code, details, failures, delay,
            )  # fmt: skip
            self._broadcast_error(code, message)
            await asyncio.sleep(delay)

    async def _attempt(self, *, wait: bool = False) -> tuple[BackendError, str]:
        """Follow one subscription until it ends; return why: the failure for viewers, details
        for the log. With ``wait`` the call waits for the channel to be ready."""
        self._stream_dropped = 0
        stream = self.hub.detector.subscribe(
            self.source_id, main_stream=self.main, wait_for_ready=wait
        )
        try:
            async for item in stream:
                if isinstance(item, Frame):
                    self._publish(item.proto)
                else:
                    self._on_source(item)
        except VigilError as e:
            return translate(e, "detector"), e.message
        except Exception as e:
            log.exception("source %s: unexpected error in its stream", self.source_id)
            return BackendError(VigilError("the bridge failed; retrying")), repr(e)
        finally:
            stream.cancel()
        # The detector ends streams on purpose when it removes the source; resubscribing tells
        # a removed source (NOT_FOUND, final) from a restarted one.
        ended = "the stream ended; resubscribing"
        return BackendError(Unavailable(ended)), "ended by the detector"

    def _publish(self, frame: dpb.Frame) -> None:
        if self._last_error is not None:
            log.info("source %s: frames flowing again", self.source_id)
            self._last_error = None
        delta = frame.dropped - self._stream_dropped
        if delta > 0:
            self.upstream_dropped += delta
            self._stream_dropped = frame.dropped
        self.frames += 1
        encoded = EncodedFrame(frame)
        for viewer in self.viewers:
            dropped = viewer.dropped(self.upstream_dropped)
            viewer.queue.put(encoded.message(viewer.extras, viewer.binary, dropped))

    def _on_source(self, source: Source) -> None:
        if source.state == "failed":
            self._broadcast_error("SOURCE_FAILED", source.last_error or "the source failed")
        elif source.state == "reconnecting":
            self._broadcast_error("SOURCE_RECONNECTING", "the source lost its input; reconnecting")

    def _broadcast_error(self, code: str, message: str) -> None:
        text = error_message(code, message)
        if text == self._last_error:
            return  # one message per outage, not one per retry
        self._last_error = text
        for viewer in self.viewers:
            viewer.queue.put(text)

    def _finish(self, failure: BackendError) -> None:
        self.hub._forget(self)
        text = error_message(failure.code, failure.message)
        for viewer in self.viewers:
            viewer.queue.put(text)
            viewer.close(failure.ws_close_code, failure.message)


class FrameHub:
    """All live feeds of one bridge, keyed by source id."""

    def __init__(
        self,
        detector: AsyncDetectorClient,
        *,
        queue_size: int,
        backoff: Callable[[], Backoff],
    ) -> None:
        self.detector = detector
        self.queue_size = queue_size
        # A new schedule for each feed: between attempts to resubscribe.
        self.backoff = backoff
        self._feeds: dict[tuple[str, bool], _Feed] = {}  # by source id and main stream
        self._stopping: set[asyncio.Task[None]] = set()
        self._closed = False

    @contextlib.contextmanager
    def watch(
        self,
        source_id: str,
        extras: frozenset[str] = frozenset(),
        *,
        binary: bool = False,
        main: bool = False,
    ) -> Iterator[Viewer]:
        """Become a viewer of ``source_id`` (``main``: of its main stream at full size) for the
        duration of the ``with`` block."""
        if self._closed:
            raise Unavailable("the bridge is shutting down")
        if not source_ids.is_source_id(source_id):  # the detector's rule: a typo never reaches it
            raise InvalidInput(f"source ids are {source_ids.RULE}")
        key = (source_id, main)
        feed = self._feeds.get(key)
        if feed is None:
            feed = self._feeds[key] = _Feed(self, source_id, main)
        viewer = feed.join(extras, binary)
        try:
            yield viewer
        finally:
            feed.leave(viewer)
            if not feed.viewers and self._feeds.get(key) is feed:
                self._forget(feed)
                self._stop(feed)

    def sources(self) -> dict[str, int]:
        """Viewers per source with a live feed."""
        viewers: dict[str, int] = {}
        for (source_id, _), feed in self._feeds.items():
            viewers[source_id] = viewers.get(source_id, 0) + len(feed.viewers)
        return viewers

    async def close(self) -> None:
        """Close every viewer ("going away") and stop every feed."""
        self._closed = True
        for feed in list(self._feeds.values()):
            self._forget(feed)
            for viewer in feed.viewers:
                viewer.close(GOING_AWAY, "the bridge is shutting down")
            self._stop(feed)
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)

    def _forget(self, feed: _Feed) -> None:
        if self._feeds.get((feed.source_id, feed.main)) is feed:
            del self._feeds[(feed.source_id, feed.main)]

    def _stop(self, feed: _Feed) -> None:
        # Not awaited: the last viewer's handler should not wait for gRPC to wind down.
        feed.task.cancel()
        self._stopping.add(feed.task)
        feed.task.add_done_callback(self._stopping.discard)
