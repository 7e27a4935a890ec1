"""Detector replicas across a PostgreSQL restart: sources keep streaming on the replica running
them, no source changes hands or runs twice, changes asked for while the database is down are
refused as retryable (UNAVAILABLE), and once it is back the leases are renewed and changes work."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pathlib
from collections.abc import AsyncIterator

import grpc
import psycopg
import pytest
from pydantic import SecretStr

from detector_service.server import DetectorServer, serve
from detector_service.settings import DetectorSettings
from tests.detector_service.replicas import SOURCES, add_sources, running, split, until
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc
from vigil.devtools.postgres import PostgresServer
from vigil.sdk import AsyncDetectorClient, Frame

# Leases that outlast the restart (it takes a second or two): nothing should move because of it.
LEASE_S = 20.0
RENEW_S = 0.5


@pytest.fixture
async def replicas(
    tmp_path: pathlib.Path, postgres_url: str
) -> AsyncIterator[list[DetectorServer]]:
    servers = []
    for name in ("a", "b"):
        settings = DetectorSettings(
            port=0,
            backend="none",
            linger_s=0.2,
            data_dir=tmp_path / name,
            database_url=SecretStr(postgres_url),
            database_connect_timeout_s=2.0,
            replica_id=name,
            lease_s=LEASE_S,
            lease_renew_s=RENEW_S,
        )
        servers.append(await serve(settings))
    yield servers
    for server in servers:
        await server.stop(0)


def leases(url: str) -> dict[str, tuple[str, int, bool]]:
    """Each source's owner, fencing token and whether its lease is live."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT source_id, owner, token, expires > now() FROM detector_leases"
        ).fetchall()
    return {str(s): (str(owner), int(token), bool(live)) for s, owner, token, live in rows}


async def count_frames(port: int, source_id: str, counts: dict[str, int]) -> None:
    async with (
        AsyncDetectorClient(f"127.0.0.1:{port}") as client,
        client.subscribe(source_id, omit_jpeg=True) as frames,
    ):
        async for item in frames:
            if isinstance(item, Frame):
                counts[source_id] = counts.get(source_id, 0) + 1


async def test_sources_keep_streaming_and_stay_put_across_a_postgres_restart(
    replicas: list[DetectorServer],
    postgres: PostgresServer,
    postgres_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="detector_service")
    a, b = replicas
    async with AsyncDetectorClient(f"127.0.0.1:{a.port}") as client:
        await add_sources(client)
    await until(lambda: split(a, b), "sources split between a and b")
    before = leases(postgres_url)
    on = {a.port: sorted(running(a)), b.port: sorted(running(b))}
    # A viewer on one source of each replica, straight to the replica running it.
    counts: dict[str, int] = {}
    watched = {port: ids[0] for port, ids in on.items()}
    viewers = [
        asyncio.create_task(count_frames(port, sid, counts)) for port, sid in watched.items()
    ]
    try:
        await until(lambda: all(counts.get(s, 0) > 0 for s in watched.values()), "first frames")
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{a.port}") as channel_a,
            grpc.aio.insecure_channel(f"127.0.0.1:{b.port}") as channel_b,
        ):
            stub_a, stub_b = (
                pb_grpc.DetectorServiceStub(channel_a),
                pb_grpc.DetectorServiceStub(channel_b),
            )
            await asyncio.to_thread(postgres.stop)
            try:
                at_stop = dict(counts)
                new = pb.SourceSpec(id="cam5", kind=pb.SOURCE_KIND_TEST_PATTERN, max_fps=5)
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stub_a.AddSource(pb.AddSourceRequest(source=new))
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
                assert postgres.password not in (refused.value.details() or "")
                mine = await stub_b.GetSource(pb.GetSourceRequest(source_id=watched[b.port]))
                changed = pb.SourceSpec()
                changed.CopyFrom(mine.source.spec)
                changed.max_fps = 4
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stub_b.UpdateSource(pb.UpdateSourceRequest(source=changed))
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
                # The viewers go on getting frames while the database is down.
                await until(
                    lambda: all(counts[s] > at_stop[s] + 5 for s in watched.values()),
                    "frames during the outage",
                )
                # Nothing stopped for want of the database.
                assert {a.port: sorted(running(a)), b.port: sorted(running(b))} == on
            finally:
                await asyncio.to_thread(postgres.start)

            # Leases renewed by their holders, under the same tokens: nothing changed hands.
            await until(
                lambda: all(live for _, _, live in leases(postgres_url).values()),
                "leases renewed after the restart",
            )
            after = leases(postgres_url)
            assert {s: (o, t) for s, (o, t, _) in after.items()} == {
                s: (o, t) for s, (o, t, _) in before.items()
            }
            assert {a.port: sorted(running(a)), b.port: sorted(running(b))} == on
            assert split(a, b)
            # Changes work again.
            await stub_b.UpdateSource(pb.UpdateSourceRequest(source=changed))
            await stub_a.AddSource(pb.AddSourceRequest(source=new))
            await until(lambda: "cam5" in running(a) | running(b), "cam5 running")
            assert not (running(a) & running(b))
            assert set(SOURCES) <= running(a) | running(b)
    finally:
        for viewer in viewers:
            viewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await viewer
    assert postgres.password not in caplog.text
    assert "keeping source leases again" in caplog.text
    for server in (a, b):
        outages = server.metrics.registry.get_sample_value("vigil_detector_lease_outages_total")
        assert (outages or 0) >= 1
