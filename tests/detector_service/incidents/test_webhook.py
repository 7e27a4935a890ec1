"""Posting incident events to a webhook: retried on 5xx, and never in the way of frames."""

from __future__ import annotations

import asyncio
import http.server
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from detector_service.incidents.webhook import Webhook
from tests.detector_service.incidents.conftest import Trackers
from tests.detector_service.incidents.helpers import Camera, det, drain
from vigil.core.backoff import Backoff


def steady(delay_s: float) -> Backoff:
    """The same short wait before every retry: the tests count retries, not the schedule."""
    return Backoff(initial_s=delay_s, max_s=delay_s)


class Receiver:
    """An HTTP server on 127.0.0.1 answering each POST with the next status of a script."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[tuple[dict[str, str], Any]] = []
        self.paths: list[str] = []
        self.got = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.got:
                    receiver.requests.append((dict(self.headers), json.loads(body)))
                    receiver.paths.append(self.path)
                    status = receiver.statuses[min(len(receiver.requests), len(statuses)) - 1]
                    receiver.got.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def wait_for(self, count: int, timeout: float = 5.0) -> None:
        with self.got:
            assert self.got.wait_for(lambda: len(self.requests) >= count, timeout)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    made = Receiver(getattr(request, "param", [500, 200]))
    yield made
    made.stop()


async def test_failed_post_is_retried_and_delivered(
    trackers: Trackers, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="detector_service")
    webhook = Webhook(receiver.url, retries=3, backoff=steady(0.01))
    tracker = trackers.make(webhook=webhook)
    sub = tracker.subscribe()
    Camera(tracker).frames(3, det("gun", 0.9))
    (event,) = await drain(sub)

    await asyncio.to_thread(receiver.wait_for, 2)
    await asyncio.sleep(0.1)  # nothing further arrives once delivered
    assert len(receiver.requests) == 2
    (h1, first), (h2, second) = receiver.requests
    assert first == second
    assert first["type"] == "INCIDENT_EVENT_TYPE_OPENED"
    incident = first["incident"]
    assert incident["id"] == event.incident.id
    assert (incident["source_id"], incident["class_name"]) == ("cam", "gun")
    assert incident["peak_confidence"] == pytest.approx(0.9)
    assert incident["detections"][0]["is_weapon"] is True
    assert "snapshot_jpeg" not in incident
    assert h1["Content-Type"] == "application/json"
    assert (
        h1["Idempotency-Key"]
        == h2["Idempotency-Key"]
        == f"{event.incident.id}:INCIDENT_EVENT_TYPE_OPENED"
    )
    assert "webhook HTTP 500 for incident" in caplog.text  # retried once
    assert "gave up" not in caplog.text
    assert "dropped" not in caplog.text


@pytest.mark.parametrize("receiver", [[400]], indirect=True)
async def test_a_final_answer_is_not_retried(
    trackers: Trackers, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="detector_service")
    webhook = Webhook(receiver.url, retries=3, backoff=steady(0.01))
    tracker = trackers.make(webhook=webhook)
    Camera(tracker).frames(3, det("gun"))
    await asyncio.to_thread(receiver.wait_for, 1)
    tracker.close()  # closing the incident posts its CLOSED event, also refused once
    types = [body["type"] for _, body in receiver.requests]
    assert types == ["INCIDENT_EVENT_TYPE_OPENED", "INCIDENT_EVENT_TYPE_CLOSED"]
    gave_up = [r.getMessage() for r in caplog.records if "gave up" in r.getMessage()]
    assert [message.split(" of incident ")[0] for message in gave_up] == [
        "webhook gave up on INCIDENT_EVENT_TYPE_OPENED",
        "webhook gave up on INCIDENT_EVENT_TYPE_CLOSED",
    ]
    assert all(message.endswith(": HTTP 400") for message in gave_up)
    assert "retrying" not in caplog.text


async def test_a_dead_webhook_never_blocks_observe(trackers: Trackers) -> None:
    with socket.socket() as s:  # a port nothing listens on: connection refused
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/hook"
    webhook = Webhook(url, retries=3, backoff=steady(0.05), queue_size=4)
    tracker = trackers.make(
        webhook=webhook, min_frames=1, window=1, close_after_s=0.1, cooldown_s=0
    )
    cam = Camera(tracker)
    began = time.perf_counter()
    for _ in range(200):  # an incident opens and closes every two frames: 200 events
        for detections in ((det("knife"),), ()):
            cam.frame(*detections)
    total = time.perf_counter() - began
    # Waiting on the dead webhook (three retries 0.05 s apart per event) would take over 30 s;
    # the bound is loose so a busy machine cannot fail it, yet far below that.
    assert total < 10.0, f"400 frames took {total:.2f} s"
    assert webhook.dropped >= 150  # four queued, one or two in flight, the rest dropped

    began = time.perf_counter()
    tracker.close()
    assert time.perf_counter() - began < 4.0


async def test_a_token_in_the_webhook_url_is_sent_but_never_logged(
    trackers: Trackers, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # httpx's own level too: importing vLLM in this process (other tests) sets it to WARNING.
    caplog.set_level(logging.DEBUG, logger="httpx")
    secret = f"canary-hook-{uuid.uuid4().hex}"
    webhook = Webhook(f"{receiver.url}?token={secret}", retries=3, backoff=steady(0.01))
    tracker = trackers.make(webhook=webhook)
    Camera(tracker).frames(3, det("gun", 0.9))
    await asyncio.to_thread(receiver.wait_for, 2)  # refused once (500), then delivered
    assert receiver.paths[-1] == f"/hook?token={secret}"
    assert "token=***" in caplog.text  # httpx logged the requests, masked
    assert secret not in caplog.text
    assert secret not in f"{webhook.url} {webhook.url!r}"
