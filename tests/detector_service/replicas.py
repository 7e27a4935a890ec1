"""Detector replicas on one PostgreSQL database for the tests: in this process (``Replicas``,
the ``start`` fixture of conftest.py) or as processes (``spawn``), and what they run."""

from __future__ import annotations

import asyncio
import os
import pathlib
import re
import subprocess
import sys
import time
from collections.abc import Callable

import psycopg
from pydantic import SecretStr

from detector_service.server import DetectorServer, serve
from detector_service.settings import DetectorSettings
from vigil.sdk import AsyncDetectorClient

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCES = ("cam1", "cam2", "cam3", "cam4")
# Short leases, so the tests wait seconds; the defaults (6 s, 1.5 s) are for real machines.
LEASE_S = 2.0
RENEW_S = 0.5
WAIT_S = 60.0


class Replicas:
    """Starts detector replicas on the test's database; stops those its test did not."""

    def __init__(
        self, tmp_path: pathlib.Path, url: str, lease_s: float = LEASE_S, renew_s: float = RENEW_S
    ) -> None:
        self.tmp_path = tmp_path
        self.url = url
        self.lease_s = lease_s
        self.renew_s = renew_s
        self.servers: list[DetectorServer] = []

    async def __call__(self, name: str) -> DetectorServer:
        settings = DetectorSettings(
            port=0,
            backend="none",
            linger_s=0.2,
            data_dir=self.tmp_path / name,
            database_url=SecretStr(self.url),
            replica_id=name,
            lease_s=self.lease_s,
            lease_renew_s=self.renew_s,
        )
        server = await serve(settings)
        self.servers.append(server)
        return server

    async def stop(self, server: DetectorServer) -> None:
        self.servers.remove(server)
        await server.stop(0)


def running(server: DetectorServer) -> set[str]:
    return {s.spec.id for s in server.registry.all()}


def owners(url: str) -> dict[str, str | None]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT source_id, owner FROM detector_leases").fetchall()
    return {str(source_id): owner for source_id, owner in rows}


async def until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        assert time.monotonic() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.1)


async def add_sources(client: AsyncDetectorClient) -> None:
    for source_id in SOURCES:
        await client.add_source(source_id, "test_pattern", mode="always", max_fps=5)


def split(*servers: DetectorServer) -> bool:
    """Every source runs on exactly one replica, and each replica runs its fair share."""
    sets = [running(s) for s in servers]
    everything = {"default", *SOURCES}
    union = set().union(*sets)
    return (
        union == everything
        and sum(len(s) for s in sets) == len(everything)
        and all(len(s) >= len(everything) // len(servers) for s in sets)
    )


def spawn(tmp_path: pathlib.Path, url: str, name: str) -> tuple[subprocess.Popen[str], int]:
    """``python -m detector_service`` as replica ``name``; its process and port."""
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'clients'}",
        "VIGIL_DETECTOR_PORT": "0",
        "VIGIL_DETECTOR_BACKEND": "none",
        "VIGIL_DETECTOR_DATA_DIR": str(tmp_path / name),
        "VIGIL_DETECTOR_DATABASE_URL": url,
        "VIGIL_DETECTOR_REPLICA_ID": name,
        "VIGIL_DETECTOR_LEASE_S": str(LEASE_S),
        "VIGIL_DETECTOR_LEASE_RENEW_S": str(RENEW_S),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "detector_service"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if found := re.search(r"detector service on [\d.]+:(\d+)", line):
            return process, int(found.group(1))
    raise AssertionError(f"replica {name} did not start")
