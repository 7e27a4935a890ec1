"""A real Redis server for tests and benchmarks: Debian's ``redis-server``, in a temporary
directory, listening on 127.0.0.1 at a free port.

The append-only file is on and synced at every write, as a production Redis keeping session names
would be set up: ``restart()`` (a clean SIGTERM, then the same port and directory) comes back with
the data it had, so tests restart it mid-session and see the bridges recover.
"""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

READY_S = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        raise FileNotFoundError("redis-server not found: install Debian's (make system)")
    return found


def _ping(port: int) -> bool:
    """One PING over a raw socket (no client library, so readiness does not depend on ours)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@dataclasses.dataclass
class RedisServer:
    directory: pathlib.Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = [
            binary(), "--bind", "127.0.0.1", "--port", str(self.port),
            "--dir", str(self.directory), "--save", "", "--appendonly", "yes",
            "--appendfsync", "always", "--daemonize", "no", "--protected-mode", "no",
        ]  # fmt: skip
        with (self.directory / "server.log").open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_S
        while not _ping(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited {self.process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server not ready in {READY_S} s:\n{self.log()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM: Redis syncs its append-only file and exits; clients see their connections
        closed."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def flush(self) -> None:
        """Empty every database, so that each test starts from nothing."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as conn:
            conn.sendall(b"FLUSHALL\r\n")
            reply = conn.recv(64)
        if not reply.startswith(b"+OK"):
            raise RuntimeError(f"FLUSHALL answered {reply!r}")

    def log(self) -> str:
        path = self.directory / "server.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


@contextlib.contextmanager
def running_redis() -> Iterator[RedisServer]:
    """Start a fresh server; stop it and remove its directory on the way out."""
    directory = pathlib.Path(tempfile.mkdtemp(prefix="vigil-redis-"))
    try:
        server = RedisServer(directory, free_port())
        try:
            server.start()
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
