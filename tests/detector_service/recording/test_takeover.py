"""A source's recording survives its move between detector replicas: two detectors on one
PostgreSQL database and one shared recordings directory; a source recorded on replica a, a
SIGKILLed, the source taken over and recorded on b. Through b (and through the SDK given both
replicas) the coverage, a snapshot and the export of a range spanning the takeover hold both
parts, in order, without overlap; the segment a left open is finished by b. And once a source has
moved, its new owner's retention deletes what the previous owner recorded, files and rows."""

from __future__ import annotations

import asyncio
import io
import itertools
import os
import pathlib
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import av
import psycopg
import pytest
from pydantic import SecretStr

from detector_service.server import DetectorServer, serve
from detector_service.settings import DetectorSettings
from vigil.sdk import AsyncDetectorClient
from vigil.sdk.recording_types import Recording

pytestmark = pytest.mark.timeout(180)

ROOT = pathlib.Path(__file__).resolve().parents[3]
# Short leases, so the test waits seconds (the defaults are for real machines).
LEASE_S = 2.0
RENEW_S = 0.5
SEGMENT_S = 2.0
WAIT_S = 90.0
# Seconds of closed segments each replica records before the test goes on.
RECORDED_S = 4.0
# Seconds the retention test keeps recordings.
KEEP_S = 6.0


def environment(tmp_path: pathlib.Path, url: str, name: str) -> dict[str, str]:
    return {
        "VIGIL_DETECTOR_PORT": "0",
        "VIGIL_DETECTOR_BACKEND": "none",
        "VIGIL_DETECTOR_DATA_DIR": str(tmp_path / name),
        "VIGIL_DETECTOR_RECORDING_DIR": str(tmp_path / "recordings"),
        "VIGIL_DETECTOR_RECORDING_SEGMENT_S": str(SEGMENT_S),
        "VIGIL_DETECTOR_DATABASE_URL": url,
        "VIGIL_DETECTOR_REPLICA_ID": name,
        "VIGIL_DETECTOR_LEASE_S": str(LEASE_S),
        "VIGIL_DETECTOR_LEASE_RENEW_S": str(RENEW_S),
    }


def spawn(tmp_path: pathlib.Path, url: str, name: str) -> tuple[subprocess.Popen[str], int]:
    """``python -m detector_service`` as replica ``name``; its process and port."""
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'clients'}",
        **environment(tmp_path, url, name),
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


def settings_of(tmp_path: pathlib.Path, url: str, name: str, **more: Any) -> DetectorSettings:
    """Replica ``name``'s settings, in this process: the test's database and recordings."""
    fields: dict[str, Any] = {
        "port": 0,
        "backend": "none",
        "data_dir": tmp_path / name,
        "recording_dir": tmp_path / "recordings",
        "recording_segment_s": SEGMENT_S,
        "database_url": SecretStr(url),
        "replica_id": name,
        "lease_s": LEASE_S,
        "lease_renew_s": RENEW_S,
    }
    return DetectorSettings(**(fields | more))


@pytest.fixture
async def replica_b(tmp_path: pathlib.Path, postgres_url: str) -> AsyncIterator[DetectorServer]:
    """Replica b, in this process, on the same database and recordings directory."""
    server = await serve(settings_of(tmp_path, postgres_url, "b"))
    yield server
    await server.stop(0)


def query(url: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


def owner(url: str, source_id: str) -> object:
    rows = query(url, f"SELECT owner FROM detector_leases WHERE source_id = '{source_id}'")
    return rows[0][0] if rows else None


def recorded(url: str, writer: str) -> float:
    """Seconds of cam's closed segments that ``writer`` wrote."""
    rows = query(
        url,
        "SELECT COALESCE(SUM(end_s - start_s), 0) FROM detector_rec_segments"
        f" WHERE source = 'cam' AND closed AND writer = '{writer}'",
    )
    return float(rows[0][0])  # type: ignore[arg-type]


def unfinished(url: str, writer: str) -> bool:
    sql = "SELECT 1 FROM detector_rec_segments WHERE NOT closed AND writer = %s"
    with psycopg.connect(url) as conn:
        return conn.execute(sql, (writer,)).fetchone() is not None


def span(url: str, writer: str) -> tuple[float, float]:
    """The first start and the last end of cam's closed segments that ``writer`` wrote."""
    sql = "SELECT min(start_s), max(end_s) FROM detector_rec_segments WHERE closed AND writer = %s"
    with psycopg.connect(url) as conn:
        row = conn.execute(sql, (writer,)).fetchone()
    assert row is not None
    return float(row[0]), float(row[1])


async def until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.2)


def packet_times(data: bytes) -> list[float]:
    """Each picture's presentation time in an MP4, seconds from its start, in file order."""
    with av.open(io.BytesIO(data), "r") as container:
        return [
            float(p.pts * p.time_base)
            for p in container.demux(video=0)
            if p.pts is not None and p.size
        ]


def assert_both_parts(export: Recording, a_part: tuple[float, float], b_start: float) -> None:
    """The export holds a's part, then b's after the takeover gap: in order, no overlap."""
    info = export.info
    assert info.start <= a_part[0] + SEGMENT_S
    assert info.end >= b_start + RECORDED_S - SEGMENT_S
    # One gap: the takeover, from a's last picture to b's first.
    assert len(info.gaps) == 1
    gap = info.gaps[0]
    assert gap.end is not None
    assert gap.start == pytest.approx(a_part[1], abs=1e-3)
    assert gap.end == pytest.approx(b_start, abs=1e-3)
    times = packet_times(export.data)
    # Decoding order is presentation order for the pictures we encode (no B-frames): strictly
    # increasing times mean no picture twice and nothing out of order.
    assert all(later > earlier for earlier, later in itertools.pairwise(times))
    walls = [info.start + t for t in times]
    before = [t for t in walls if t <= gap.start]
    after = [t for t in walls if t >= gap.end - 0.01]
    assert len(before) + len(after) == len(walls)
    assert before[-1] - before[0] >= RECORDED_S - SEGMENT_S
    assert after[-1] - after[0] >= RECORDED_S - SEGMENT_S


async def test_a_sources_recording_is_exported_whole_after_its_replica_is_killed(
    tmp_path: pathlib.Path, postgres_url: str, replica_b: DetectorServer
) -> None:
    b = replica_b
    # b already holds the configured default source: the next one, cam, goes to a.
    process, port_a = await asyncio.to_thread(spawn, tmp_path, postgres_url, "a")
    try:
        async with AsyncDetectorClient(f"127.0.0.1:{port_a}") as client:
            added = time.time()
            await client.add_source("cam", "test_pattern", mode="always", max_fps=5)
        await until(lambda: owner(postgres_url, "cam") == "a", "cam run by a")
        await until(lambda: recorded(postgres_url, "a") >= RECORDED_S, "cam recorded on a")
        process.kill()
        process.wait()
        killed = time.time()
        await until(lambda: recorded(postgres_url, "b") >= RECORDED_S, "cam recorded on b")
        assert owner(postgres_url, "cam") == "b"
        # The segment a left open when it was killed was finished by b, and kept a's name.
        await until(lambda: not unfinished(postgres_url, "a"), "a's open segment finished")
        a_start, a_end = span(postgres_url, "a")
        b_first, _ = span(postgres_url, "b")
        assert added <= a_start < a_end <= killed + 0.5 < b_first
        end = b_first + RECORDED_S

        # Through b, which never ran cam while a did.
        async with AsyncDetectorClient(f"127.0.0.1:{b.port}") as client:
            coverage = await client.coverage("cam", start=added - 1, end=end)
            through_b = await client.export("cam", added - 1, end)
            # A picture from a's part, decoded by b from a's segment file.
            shot = await client.snapshot("cam", at=a_start + 1.0)
        assert len(coverage.ranges) == 2
        assert coverage.ranges[0].start == pytest.approx(a_start)
        assert coverage.ranges[1].start == pytest.approx(b_first)
        assert_both_parts(through_b, (a_start, a_end), b_first)
        assert a_start + 1.0 - 0.25 <= shot.at <= a_start + 1.0
        assert shot.jpeg.startswith(b"\xff\xd8")

        # Through the SDK given both replicas (a's address refuses connections now).
        async with AsyncDetectorClient(f"ipv4:127.0.0.1:{port_a},127.0.0.1:{b.port}") as client:
            through_both = await client.export("cam", added - 1, end)
        assert through_both.data == through_b.data
        assert through_both.info.gaps == through_b.info.gaps
    finally:
        process.kill()
        process.wait()


async def test_the_owners_retention_deletes_what_the_previous_owner_recorded(
    tmp_path: pathlib.Path, postgres_url: str
) -> None:
    # Recordings kept KEEP_S seconds, checked twice a second.
    keep = {"recording_days": KEEP_S / 86_400, "recording_check_s": 0.5}
    b = await serve(settings_of(tmp_path, postgres_url, "b", **keep))
    try:
        # b holds the configured default source: cam, added through a, goes to a.
        a = await serve(settings_of(tmp_path, postgres_url, "a", **keep))
        async with AsyncDetectorClient(f"127.0.0.1:{a.port}") as client:
            await client.add_source("cam", "test_pattern", mode="always", max_fps=5)
        await until(lambda: recorded(postgres_url, "a") >= RECORDED_S, "cam recorded on a")
        await a.stop(0)  # hands cam back: b takes it over
        # What a left: from now on only b's retention runs.
        left = a_segments(postgres_url, tmp_path / "recordings")
        assert left
        await until(lambda: recorded(postgres_url, "b") >= SEGMENT_S, "cam recorded on b")
        await until(
            lambda: not a_segments(postgres_url, tmp_path / "recordings"),
            "a's segments deleted by b",
        )
        assert not any(path.exists() for path in left.values())
        # b's own recording goes on: the segment being written is never taken.
        assert unfinished(postgres_url, "b")
        assert recorded(postgres_url, "b") > 0
    finally:
        await b.stop(0)


def a_segments(url: str, root: pathlib.Path) -> dict[int, pathlib.Path]:
    """The index rows a wrote for cam, by id, with their files (kept relative to ``root``)."""
    sql = "SELECT id, path FROM detector_rec_segments WHERE writer = 'a'"
    with psycopg.connect(url) as conn:
        rows = conn.execute(sql).fetchall()
    return {int(i): root / str(path) for i, path in rows}
