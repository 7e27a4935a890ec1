"""The frame hub: one detector ``Subscribe`` stream per source, fanned out to all its viewers.

The first viewer of a source opens the stream and the last one to leave closes it, so the detector
sees one subscriber per source however many browsers watch. Each viewer has its own newest-wins
queue: a slow browser loses frames, it never delays the stream or the other viewers.

Each frame is turned into its WebSocket message once (base64 + orjson, ~0.25 ms for 100 KB) and
the very same ``str`` goes to every viewer that asked for the same fields; that is the only CPU
work the hub does on the event loop.

Binary viewers (``?format=binary``) get the same frame as one binary message instead, built once
per frame and shared the same way (see ``binary_message`` for the layout).

When the detector cannot be reached or the stream breaks, every viewer gets an error message and
the hub resubscribes with capped exponential backoff; frames resume on the same WebSockets. Errors
that retrying cannot fix (an unknown source, a bad argument) close the viewers instead, with the
close code from ``vigil.core.errors``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
import re
import struct
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import grpc
import orjson

from bridge.errors import BackendError, translate
from vigil.common.v1 import common_pb2 as cpb
from vigil.core.errors import InvalidInput, Unavailable, VigilError
from vigil.core.queues import NewestWinsQueue
from vigil.detector.v1 import detector_service_pb2 as dpb
from vigil.detector.v1 import detector_service_pb2_grpc as dpb_grpc

if TYPE_CHECKING:
    from vigil.detector.v1.detector_service_pb2_grpc import DetectorServiceAsyncStub

log = logging.getLogger(__name__)

# Optional fields a viewer may ask for with ``?extras=a,b``; without them a frame message is
# exactly {"type", "data", "timestamp"}, as the original protocol defines it.
EXTRAS = frozenset({"detections", "sequence", "dropped", "latency"})
# The detector's rule for source ids; checked here so a typo never reaches it.
SOURCE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

# WebSocket close reasons must fit in a control frame (123 bytes).
_MAX_REASON = 120
# Close code for viewers of a bridge that is shutting down ("going away").
GOING_AWAY = 1001


def parse_extras(raw: str | None) -> frozenset[str]:
    """Turn ``"detections,sequence"`` into a set of known extras; raise ``InvalidInput`` if any
    name is unknown, so a typo is reported rather than silently ignored."""
    if not raw:
        return frozenset()
    names = frozenset(name.strip() for name in raw.split(",") if name.strip())
    unknown = names - EXTRAS
    if unknown:
        raise InvalidInput(
            f"unknown extras {', '.join(sorted(unknown))}; known: {', '.join(sorted(EXTRAS))}"
        )
    return names


def error_message(code: str, message: str) -> str:
    return orjson.dumps({"type": "error", "code": code, "message": message}).decode()


def capture_seconds(frame: dpb.Frame, fallback: float) -> float:
    ts = frame.capture_time
    if ts.seconds == 0 and ts.nanos == 0:
        return fallback
    return ts.seconds + ts.nanos / 1e9


def encode_frame(frame: dpb.Frame, data: str, extras: frozenset[str], received: float) -> str:
    """The message for one frame; ``data`` is the frame's JPEG in base64, computed once."""
    return orjson.dumps(_frame_fields(frame, extras, received, data=data)).decode()


# Binary frame messages (``?format=binary``), all integers big-endian:
#   bytes 0-3      N, the length of the header (unsigned 32-bit)
#   bytes 4-(4+N)  the header: UTF-8 JSON {"type": "frame", "timestamp": <capture time, s>,
#                  "sequence": <source frame number>} plus the fields ``?extras=`` asks for
#                  (latency_ms, inference_ms, width, height, detections, dropped)
#   the rest       the JPEG, exactly as the detector sent it
# Errors still arrive as JSON text messages, so a client tells them apart by message type.
HEADER_LENGTH = struct.Struct(">I")


def binary_message(header: dict[str, Any], jpeg: bytes) -> bytes:
    """Pack one binary frame message (see the layout above)."""
    encoded = orjson.dumps(header)
    return b"".join((HEADER_LENGTH.pack(len(encoded)), encoded, jpeg))


def parse_binary_message(message: bytes) -> tuple[dict[str, Any], bytes]:
    """Split a binary frame message into its header and JPEG (for clients and tests)."""
    (length,) = HEADER_LENGTH.unpack_from(message)
    header: dict[str, Any] = orjson.loads(message[4 : 4 + length])
    return header, message[4 + length :]


def _frame_fields(
    frame: dpb.Frame, extras: frozenset[str], received: float, *, data: str | None
) -> dict[str, Any]:
    timestamp = capture_seconds(frame, received)
    msg: dict[str, Any] = {"type": "frame"}
    if data is not None:
        msg["data"] = data
    msg["timestamp"] = timestamp
    if "sequence" in extras or data is None:
        msg["sequence"] = frame.sequence
    if "latency" in extras:
        # Capture to arrival at the bridge; the browser adds its own leg from ``timestamp``.
        msg["latency_ms"] = round((received - timestamp) * 1000.0, 3)
        msg["inference_ms"] = round(frame.inference_ms, 3)
    if "detections" in extras:
        msg["width"] = frame.width
        msg["height"] = frame.height
        msg["detections"] = [_detection(d) for d in frame.detections]
    return msg


def _detection(d: cpb.Detection) -> dict[str, Any]:
    out: dict[str, Any] = {
        "class_name": d.class_name,
        "class_id": d.class_id,
        "confidence": round(d.confidence, 4),
        "box": {
            "x_min": round(d.box.x_min, 1),
            "y_min": round(d.box.y_min, 1),
            "x_max": round(d.box.x_max, 1),
            "y_max": round(d.box.y_max, 1),
        },
        "is_weapon": d.is_weapon,
        "model": d.model,
    }
    if d.HasField("track_id"):
        out["track_id"] = d.track_id
    return out


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


class _EncodedFrame:
    """One frame's messages, each variant built at most once and shared by every viewer."""

    def __init__(self, frame: dpb.Frame) -> None:
        self.frame = frame
        self.received = time.time()
        self._data: str | None = None
        self._texts: dict[frozenset[str], str] = {}
        self._binaries: dict[frozenset[str], tuple[dict[str, Any], bytes]] = {}

    def text(self, extras: frozenset[str]) -> str:
        key = extras - {"dropped"}
        text = self._texts.get(key)
        if text is None:
            if self._data is None:
                self._data = base64.b64encode(self.frame.jpeg).decode("ascii")
            text = self._texts[key] = encode_frame(self.frame, self._data, key, self.received)
        return text

    def binary(self, extras: frozenset[str]) -> tuple[dict[str, Any], bytes]:
        key = extras - {"dropped"}
        packed = self._binaries.get(key)
        if packed is None:
            header = _frame_fields(self.frame, key, self.received, data=None)
            packed = self._binaries[key] = (header, binary_message(header, self.frame.jpeg))
        return packed

    def message_for(self, viewer: Viewer, upstream_dropped: int) -> str | bytes:
        if not viewer.binary:
            return self.text_for(viewer, upstream_dropped)
        header, packed = self.binary(viewer.extras)
        if "dropped" in viewer.extras:
            # Per-viewer figure: a header of its own, the JPEG copied once more (a memcpy).
            own = {**header, "dropped": viewer.dropped(upstream_dropped)}
            return binary_message(own, self.frame.jpeg)
        return packed

    def text_for(self, viewer: Viewer, upstream_dropped: int) -> str:
        text = self.text(viewer.extras)
        if "dropped" in viewer.extras:
            # Per-viewer figure: spliced onto the shared encoding instead of re-encoding the JPEG.
            text = f'{text[:-1]},"dropped":{viewer.dropped(upstream_dropped)}}}'
        return text


class _Feed:
    """The shared stream of one source and the viewers it feeds."""

    def __init__(self, hub: FrameHub, source_id: str) -> None:
        self.hub = hub
        self.source_id = source_id
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
        delay = self.hub.retry_initial_s
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
                delay, failures = self.hub.retry_initial_s, 0
            if failure.final:
                log.info("source %s: %s (%s), closing its viewers", self.source_id, message, code)
                self._finish(failure)
                return
            failures += 1
            # The first failure of an outage is news; the retries after it are not.
            log.log(
                logging.WARNING if failures == 1 else logging.DEBUG,
                "source %s: stream failed (%s %s); retry %d in %.2f s",
                self.source_id, code, details, failures, delay,
            )  # fmt: skip
            self._broadcast_error(code, message)
            # Jitter keeps many bridges from hammering a restarted detector in lockstep.
            await asyncio.sleep(delay * random.uniform(0.8, 1.0))
            delay = min(delay * 2.0, self.hub.retry_max_s)

    async def _attempt(self, *, wait: bool = False) -> tuple[BackendError, str]:
        """Follow one subscription until it ends; return why: the failure for viewers, details
        for the log. With ``wait`` the call waits for the channel to be ready."""
        self._stream_dropped = 0
        call = self.hub.stub.Subscribe(
            dpb.SubscribeRequest(source_id=self.source_id), wait_for_ready=wait
        )
        try:
            async for response in call:
                kind = response.WhichOneof("event")
                if kind == "frame":
                    self._publish(response.frame)
                elif kind == "source":
                    self._on_source(response.source)
        except (grpc.RpcError, VigilError) as e:
            details = e.details() if isinstance(e, grpc.aio.AioRpcError) else str(e)
            return translate(e, "detector"), details or ""
        except Exception as e:
            log.exception("source %s: unexpected error in its stream", self.source_id)
            return BackendError(VigilError("the bridge failed; retrying")), repr(e)
        finally:
            call.cancel()
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
        encoded = _EncodedFrame(frame)
        for viewer in self.viewers:
            viewer.queue.put(encoded.message_for(viewer, self.upstream_dropped))

    def _on_source(self, source: dpb.Source) -> None:
        if source.state == dpb.SOURCE_STATE_FAILED:
            self._broadcast_error("SOURCE_FAILED", source.last_error or "the source failed")
        elif source.state == dpb.SOURCE_STATE_RECONNECTING:
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
        channel: grpc.aio.Channel,
        *,
        queue_size: int,
        retry_initial_s: float,
        retry_max_s: float,
    ) -> None:
        self.stub: DetectorServiceAsyncStub = dpb_grpc.DetectorServiceStub(channel)
        self.queue_size = queue_size
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self._feeds: dict[str, _Feed] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._closed = False

    @contextlib.contextmanager
    def watch(
        self, source_id: str, extras: frozenset[str] = frozenset(), *, binary: bool = False
    ) -> Iterator[Viewer]:
        """Become a viewer of ``source_id`` for the duration of the ``with`` block."""
        if self._closed:
            raise Unavailable("the bridge is shutting down")
        if not SOURCE_ID.fullmatch(source_id):
            raise InvalidInput("source ids are 1-64 letters, digits, '-' or '_'")
        feed = self._feeds.get(source_id)
        if feed is None:
            feed = self._feeds[source_id] = _Feed(self, source_id)
        viewer = feed.join(extras, binary)
        try:
            yield viewer
        finally:
            feed.leave(viewer)
            if not feed.viewers and self._feeds.get(source_id) is feed:
                self._forget(feed)
                self._stop(feed)

    def sources(self) -> dict[str, int]:
        """Viewers per source with a live feed."""
        return {source_id: len(feed.viewers) for source_id, feed in self._feeds.items()}

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
        if self._feeds.get(feed.source_id) is feed:
            del self._feeds[feed.source_id]

    def _stop(self, feed: _Feed) -> None:
        # Not awaited: the last viewer's handler should not wait for gRPC to wind down.
        feed.task.cancel()
        self._stopping.add(feed.task)
        feed.task.add_done_callback(self._stopping.discard)
