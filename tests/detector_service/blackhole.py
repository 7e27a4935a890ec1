"""Hostile local "cameras": one that accepts connections and never answers (every open against it
hangs), and one that answers garbage (every open fails)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator


class BlackHole:
    """Accepts on 127.0.0.1 and reads whatever comes, never writing a byte.

    ``pending`` is how many connections are open right now (clients still waiting for an answer),
    ``most_pending`` the most there ever were at once, and ``closed`` how many clients gave up.
    """

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self.pending = 0
        self.most_pending = 0
        self.closed = 0
        self._sockets: list[socket.socket] = []
        self._running = True
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/never"

    def _accept(self) -> None:
        while self._running:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.pending += 1
                self.most_pending = max(self.most_pending, self.pending)
                self._sockets.append(conn)
            threading.Thread(target=self._swallow, args=(conn,), daemon=True).start()

    def _swallow(self, conn: socket.socket) -> None:
        try:
            while conn.recv(4096):
                pass
        except OSError:
            pass
        with self._lock:
            self.pending -= 1
            self.closed += 1

    def close(self) -> None:
        self._running = False
        self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for conn in sockets:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


@contextlib.contextmanager
def garbage_server() -> Iterator[int]:
    """A local TCP port that accepts, answers garbage (neither RTSP nor HTTP) and closes: a
    capture's open really starts and then fails. Yields the port."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn, contextlib.suppress(OSError):
                conn.settimeout(1)
                conn.recv(4096)
                conn.sendall(b"\x00garbage, not RTSP nor HTTP\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()
