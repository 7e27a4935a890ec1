"""Posting incident events as JSON to a webhook, on a background thread.

``post`` only puts the event in a bounded queue and returns; one thread sends them in order with
httpx, retrying connection errors, timeouts, 408, 429 and 5xx answers with the shared backoff.
When the queue is full (the receiver is down or slow and events keep coming) the new event is
dropped, counted and logged: frames must never wait for a webhook. Events stay in the history
(ListIncidents) whatever happens here.

The body is the proto3 JSON mapping of ``StreamIncidentsResponse`` with field names as in the
proto, for example ``{"type": "INCIDENT_EVENT_TYPE_OPENED", "incident": {"id": ..., ...}}``;
the snapshot JPEG is left out. Each event carries an ``Idempotency-Key`` header
(incident id and event type), the same on every retry, so a receiver can drop duplicates.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading

import httpx
from google.protobuf import json_format

from detector_service.source_uri import SourceUri, mask
from vigil.core.backoff import Backoff
from vigil.detector.v1 import detector_service_pb2 as pb

log = logging.getLogger(__name__)

# Seconds one POST may take (connect, send, answer) before it counts as failed and is retried.
TIMEOUT_S = 5.0

# Answers worth retrying; any other non-2xx answer is final.
_RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})


class _MaskUrls(logging.Filter):
    """httpx logs every request's full URL at INFO: a webhook's ``?token=`` would be in the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                mask(str(arg)) if isinstance(arg, httpx.URL) else arg for arg in record.args
            )
        return True


def _mask_httpx_log() -> None:
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _MaskUrls) for f in logger.filters):
        logger.addFilter(_MaskUrls())


class Webhook:
    def __init__(
        self,
        url: str,
        retries: int = 3,
        *,
        queue_size: int = 100,
        backoff: Backoff | None = None,
    ) -> None:
        # Receivers take a secret in the URL (``?token=``, ``user:password@``): the real one
        # only goes to httpx, which would log it but for the filter.
        self.url = SourceUri(url)
        _mask_httpx_log()
        self.retries = retries
        # One sender thread, one schedule: reset for each event.
        self._backoff = backoff or Backoff(initial_s=0.5, max_s=10.0)
        # None is a wake-up call from close().
        self._queue: queue.Queue[pb.StreamIncidentsResponse | None] = queue.Queue(queue_size)
        self._client = httpx.Client(
            timeout=TIMEOUT_S,
            headers={"User-Agent": "vigil-detector"},
            follow_redirects=False,
        )
        self._closing = threading.Event()
        self._lock = threading.Lock()
        #: Events dropped unsent because the queue was full.
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="webhook", daemon=True)
        self._thread.start()

    def post(self, event: pb.StreamIncidentsResponse) -> bool:
        """Queue ``event`` for sending; never blocks. False when it was dropped."""
        if self._closing.is_set():
            return False
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            with self._lock:
                self.dropped += 1
                dropped = self.dropped
            # The first drop and then every hundredth: a dead receiver must not flood the log.
            if dropped == 1 or dropped % 100 == 0:
                log.warning("webhook queue full: %d incident events dropped so far", dropped)
            return False
        return True

    @staticmethod
    def body(event: pb.StreamIncidentsResponse) -> bytes:
        message = event
        if event.incident.snapshot_jpeg:
            message = pb.StreamIncidentsResponse()
            message.CopyFrom(event)
            message.incident.ClearField("snapshot_jpeg")
        as_dict = json_format.MessageToDict(message, preserving_proto_field_name=True)
        return json.dumps(as_dict, separators=(",", ":")).encode()

    def _run(self) -> None:
        while True:
            try:
                event = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._closing.is_set():
                    return
                continue
            if event is None:  # closing
                if self._queue.empty():
                    return
                continue
            try:
                self._send(event)
            except Exception:
                log.exception("webhook: unexpected error")

    def _send(self, event: pb.StreamIncidentsResponse) -> None:
        body = self.body(event)
        kind = pb.IncidentEventType.Name(event.type)
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": f"{event.incident.id}:{kind}",
        }
        self._backoff.reset()
        for attempt in range(self.retries + 1):
            try:
                answer = self._client.post(self.url.reveal(), content=body, headers=headers)
            except httpx.HTTPError as exc:
                problem = self.url.redact(f"{type(exc).__name__}: {exc}")
            else:
                if answer.is_success:
                    return
                problem = f"HTTP {answer.status_code}"
                if answer.status_code not in _RETRYABLE:
                    break
            if attempt == self.retries:
                break
            log.info("webhook %s for incident %s; retrying", problem, event.incident.id)
            # Closing cuts the backoff short: what is left is tried once each, then dropped.
            if self._closing.wait(self._backoff.next()):
                break
        log.warning("webhook gave up on %s of incident %s: %s", kind, event.incident.id, problem)

    def close(self, timeout: float = 2.0) -> None:
        """Stop taking events; send what is queued for at most ``timeout`` seconds (blocks)."""
        self._closing.set()
        # Wakes the sender now; when the queue is full it finds out within its polling interval.
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            # A daemon thread: it dies with the process, still holding the client.
            log.warning("webhook: %d events unsent at shutdown", self._queue.qsize())
        else:
            self._client.close()
