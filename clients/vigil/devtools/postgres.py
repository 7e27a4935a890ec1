"""A real PostgreSQL server for tests and benchmarks: Debian's binaries, a cluster in a temporary
directory, listening on 127.0.0.1 at a free port and on a Unix socket in that directory.

PostgreSQL refuses to run as root, and CI runs as root: then the cluster belongs to the
``postgres`` user Debian's package creates (``nobody`` where there is none), in a directory of its
own under the system's temporary directory (pytest's are private to root), and every binary runs
through ``setpriv`` as that user. The superuser ``vigil`` has a random password that connections
over TCP must give, as they would in production.

``PostgresServer.create_database()`` makes an empty database (from template0: fast) and returns
its URL; tests get one each through the ``postgres_url`` fixture (tests/conftest.py).
``restart()`` stops it (a fast shutdown that cuts every session) and starts it again on the same
port and data, as a database failover or upgrade looks to the services.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import pathlib
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import psycopg
from psycopg import sql

USER = "vigil"
READY_S = 60.0


def binary(name: str) -> pathlib.Path:
    """A PostgreSQL program: from PATH, else the newest of Debian's /usr/lib/postgresql/*/bin."""
    found = shutil.which(name)
    if found:
        return pathlib.Path(found)
    versions = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda path: int(pathlib.Path(path).parts[-3]),
    )
    if not versions:
        raise FileNotFoundError(f"{name} not found: install Debian's postgresql-15 (make system)")
    return pathlib.Path(versions[-1])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _owner() -> pwd.struct_passwd | None:
    """The user the cluster runs as when we are root; None when we are not."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root with neither a postgres nor a nobody user")


@dataclasses.dataclass
class PostgresServer:
    """One cluster: ``stop()`` and ``start()`` again (same port, same data) restart it."""

    directory: pathlib.Path
    port: int
    password: str
    command: list[str]
    process: subprocess.Popen[bytes] | None = None
    databases: int = 0

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}:{self.password}@{self.host}:{self.port}/{database}"

    def start(self) -> None:
        """Start the server and wait until it takes connections."""
        with (self.directory / "server.log").open("ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_S
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited {self.process.returncode}:\n{self.log()}")
            try:
                with psycopg.connect(self.url(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"postgres not ready in {READY_S} s:\n{self.log()}"
                    ) from None
                time.sleep(0.1)

    def stop(self) -> None:
        """Fast shutdown (SIGINT: sessions rolled back and cut, a checkpoint, exit)."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def create_database(self) -> str:
        self.databases += 1
        name = f"test_{self.databases}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name))
            )
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rpartition("/")[2]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def log(self) -> str:
        path = self.directory / "server.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def _as_owner(owner: pwd.struct_passwd | None, command: list[str]) -> list[str]:
    if owner is None:
        return command
    # setpriv execs the program itself: the child we wait for and signal is postgres.
    return [
        "setpriv", f"--reuid={owner.pw_uid}", f"--regid={owner.pw_gid}", "--clear-groups",
        *command,
    ]  # fmt: skip


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """Start a fresh cluster; stop it and remove it on the way out."""
    owner = _owner()
    directory = pathlib.Path(tempfile.mkdtemp(prefix="vigil-pg-"))
    try:
        if owner is not None:
            os.chown(directory, owner.pw_uid, owner.pw_gid)
        password = secrets.token_urlsafe(16)
        pwfile = directory / "pwfile"
        pwfile.write_text(password + "\n")
        if owner is not None:
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        data = directory / "data"
        initdb = [
            str(binary("initdb")), "-D", str(data), "-U", USER, f"--pwfile={pwfile}",
            "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8",
            "--no-locale", "--no-sync",
        ]  # fmt: skip
        made = subprocess.run(
            _as_owner(owner, initdb), capture_output=True, text=True, timeout=120, check=False
        )
        if made.returncode != 0:
            # Typically: the cluster's user cannot reach the directory (a private TMPDIR).
            raise RuntimeError(f"initdb in {directory} failed:\n{made.stdout}{made.stderr}")
        pwfile.unlink()
        port = free_port()
        command = [
            str(binary("postgres")), "-D", str(data), "-h", "127.0.0.1", "-p", str(port),
            "-k", str(directory), "-c", "fsync=off", "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off",
        ]  # fmt: skip
        server = PostgresServer(directory, port, password, _as_owner(owner, command))
        try:
            server.start()
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
