"""A misbehaving MJPEG-over-HTTP camera for the fault tests, switchable while it runs.

Modes: ``ok`` (an endless MJPEG stream), ``stall`` (connections stay open, nothing more is
sent: a camera that froze), ``unauthorized`` (HTTP 401 to every request), ``garbage``
(a well-formed multipart stream whose parts are random bytes, never a decodable picture).
Every request's arrival time is kept, to measure the reconnect backoff.
"""

from __future__ import annotations

import http.server
import os
import socketserver
import threading
import time

import cv2
import numpy as np

MODES = ("ok", "stall", "unauthorized", "garbage")


def _jpeg(n: int) -> bytes:
    image = np.full((120, 160, 3), (n * 9) % 255, np.uint8)
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    return bytes(buf.tobytes())


class FaultyCamera:
    def __init__(self, mode: str = "ok", fps: float = 15.0) -> None:
        assert mode in MODES
        self.mode = mode
        self.fps = fps
        self.requests: list[float] = []  # time.monotonic() of each request
        self._server: socketserver.ThreadingTCPServer | None = None
        self._stopped = threading.Event()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self) -> None:
        camera = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                camera.requests.append(time.monotonic())
                if camera.mode == "unauthorized":
                    body = b"unauthorized"
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="camera"')
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                n = 0
                try:
                    while not camera._stopped.is_set():
                        if camera.mode == "stall":
                            time.sleep(0.05)
                            continue
                        data = _jpeg(n) if camera.mode == "ok" else os.urandom(4000)
                        self.wfile.write(
                            b"--frame\r\nContent-Type: image/jpeg\r\n"
                            + f"Content-Length: {len(data)}\r\n\r\n".encode()
                            + data
                            + b"\r\n"
                        )
                        n += 1
                        time.sleep(1 / camera.fps)
                except OSError:
                    pass

            def log_message(self, format: str, *args: object) -> None:
                pass

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
