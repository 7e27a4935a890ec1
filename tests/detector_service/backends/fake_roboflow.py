"""A local stand-in for Roboflow: the hosted v0 route and a self-hosted inference server's v1 API.

It speaks the wire format inference-sdk 1.8.3 uses (see the "Roboflow wire format" field notes),
records every request, and answers with predictions sized to the frame it was sent.
"""

from __future__ import annotations

import base64
import http.server
import json
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

MODEL_ID = "weapons-x1y2z/3"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeRoboflow:
    #: Predictions returned for every frame, in pixels of the frame received (x, y the centre).
    predictions: list[dict[str, Any]] = field(default_factory=list)
    #: Status codes to answer, in turn, before a route ("v0", "registry", "add", "infer") succeeds.
    failures: dict[str, list[int]] = field(default_factory=dict)
    #: Models the v1 server has loaded.
    loaded: set[str] = field(default_factory=set)
    requests: list[Request] = field(default_factory=list)
    #: Frames decoded from request bodies, in arrival order.
    frames: list[npt.NDArray[np.uint8]] = field(default_factory=list)
    #: Seconds to wait before answering, to play a hung server.
    delay_s: float = 0.0
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def routes(self, route: str) -> list[Request]:
        return [r for r in self.requests if _route(r.method, r.path) == route]

    def answer(self, request: Request) -> tuple[int, Any]:
        route = _route(request.method, request.path)
        with self._lock:
            self.requests.append(request)
            pending = self.failures.get(route)
            status = pending.pop(0) if pending else 200
        time.sleep(self.delay_s)
        if status != 200:
            # Real servers name the rejected key; the client must not pass that on.
            key = request.query.get("api_key") or _json_key(request.body)
            return status, {"message": f"status {status} for api_key={key}"}
        if route == "registry":
            return 200, self._registry()
        if route == "add":
            self.loaded.add(request.json()["model_id"])
            return 200, self._registry()
        if route == "infer":
            image = request.json()["image"]
            assert image["type"] == "base64"
            return 200, self._predict(image["value"])
        if route == "v0":
            return 200, self._predict(request.body.decode())
        return 404, {"detail": "Not Found"}

    def _registry(self) -> dict[str, Any]:
        return {
            "models": [
                {
                    "model_id": m,
                    "task_type": "object-detection",
                    "batch_size": "dynamic",
                    "input_height": 640,
                    "input_width": 640,
                }
                for m in sorted(self.loaded)
            ]
        }

    def _predict(self, b64: str) -> dict[str, Any]:
        decoded = cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_COLOR)
        assert decoded is not None, "the body is not a base64 image"
        frame = np.asarray(decoded, np.uint8)
        with self._lock:
            self.frames.append(frame)
        return {
            "inference_id": str(uuid.uuid4()),
            "time": 0.012,
            "image": {"width": frame.shape[1], "height": frame.shape[0]},
            "predictions": [{**p, "detection_id": str(uuid.uuid4())} for p in self.predictions],
        }


def _route(method: str, path: str) -> str:
    if method == "GET" and path == "/model/registry":
        return "registry"
    if method == "POST" and path == "/model/add":
        return "add"
    if method == "POST" and path == "/infer/object_detection":
        return "infer"
    if method == "POST" and path.count("/") == 2:
        return "v0"
    return "other"


def _json_key(body: bytes) -> str:
    try:
        return str(json.loads(body).get("api_key"))
    except (ValueError, AttributeError):
        return ""


@contextmanager
def serve(fake: FakeRoboflow) -> Iterator[FakeRoboflow]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def _handle(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            request = Request(
                method=self.command,
                path=url.path,
                query=dict(urllib.parse.parse_qsl(url.query)),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
            )
            status, payload = fake.answer(request)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = _handle
        do_POST = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep the test output about the client

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
