"""A real MJPEG-over-HTTP camera for tests: multipart/x-mixed-replace on 127.0.0.1."""

from __future__ import annotations

import http.server
import socketserver
import threading
import time

import cv2
import numpy as np


def _frame(n: int) -> bytes:
    image = np.full((240, 320, 3), (n * 7) % 255, np.uint8)
    cv2.putText(image, str(n), (20, 120), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    return buf.tobytes()


class MjpegCamera:
    """Serves an endless MJPEG stream at ``url`` until ``stop``; ``start`` reuses the same port."""

    def __init__(self, fps: float = 20.0, port: int = 0) -> None:
        self.fps = fps
        self.port = port
        self._server: socketserver.ThreadingTCPServer | None = None
        self._alive = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self) -> None:
        camera = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                n = 0
                try:
                    while camera._alive.is_set():
                        data = _frame(n)
                        self.wfile.write(
                            b"--frame\r\nContent-Type: image/jpeg\r\n"
                            + f"Content-Length: {len(data)}\r\n\r\n".encode()
                            + data
                            + b"\r\n"
                        )
                        n += 1
                        time.sleep(1 / camera.fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, format: str, *args: object) -> None:
                pass

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._alive.set()
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._alive.clear()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
