"""Detector replicas on one PostgreSQL database: each source run by exactly one replica (a lease),
sources split between replicas, calls to a replica that does not run a source answered with the
owner's address and followed there by the SDK, and a killed replica's sources taken over by
another, with a viewer resuming. Takeover times are printed, not asserted (``vigil bench``)."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import time

import grpc
import pytest

from detector_service.postgres_sources import PostgresSourceStore
from tests.detector_service.replicas import (
    SOURCES,
    WAIT_S,
    Replicas,
    add_sources,
    owners,
    running,
    spawn,
    split,
    until,
)
from vigil.core.errors import AlreadyExists, Unavailable, from_rpc_error
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc
from vigil.sdk import AsyncDetectorClient, DetectorClient, Frame

Start = Replicas


async def test_sources_are_split_between_replicas_and_each_runs_once(
    start: Start, postgres_url: str
) -> None:
    a = await start("a")
    b = await start("b")
    async with AsyncDetectorClient(f"127.0.0.1:{a.port}") as client:
        await add_sources(client)
        await until(lambda: split(a, b), "sources split between a and b")
        # GetSource is answered for every source through either replica (the SDK follows).
        for source_id in SOURCES:
            assert (await client.get_source(source_id)).spec.id == source_id
        # ListSources through either replica: every source, with the replica running it.
        address = {"a": f"127.0.0.1:{a.port}", "b": f"127.0.0.1:{b.port}"}
        expected = {
            **dict.fromkeys(running(a), address["a"]),
            **dict.fromkeys(running(b), address["b"]),
        }
        for port in (a.port, b.port):
            async with AsyncDetectorClient(f"127.0.0.1:{port}") as there:
                listed = await there.list_sources()
            assert {s.id: s.replica for s in listed} == expected
            # Run elsewhere: the spec only, as kept (URIs masked), without live state.
            local = running(a if port == a.port else b)
            assert all(s.state == "unspecified" for s in listed if s.id not in local)
            assert all(s.state != "unspecified" for s in listed if s.id in local)
    held = owners(postgres_url)
    assert held == {**dict.fromkeys(running(a), "a"), **dict.fromkeys(running(b), "b")}


async def test_a_call_to_a_replica_not_running_the_source_names_the_owner_and_is_followed(
    start: Start,
) -> None:
    a = await start("a")
    b = await start("b")
    async with AsyncDetectorClient(f"127.0.0.1:{a.port}") as client:
        await add_sources(client)
        await until(lambda: split(a, b), "sources split between a and b")
        elsewhere = sorted(running(b) - {"default"})[0]
        # The raw answer: UNAVAILABLE naming b's address, and no retries of gRPC's own.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{a.port}") as channel:
            stub = pb_grpc.DetectorServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.GetSource(pb.GetSourceRequest(source_id=elsewhere))
        error = from_rpc_error(refused.value)
        assert isinstance(error, Unavailable)
        assert error.metadata["owner"] == f"127.0.0.1:{b.port}"
        assert error.metadata["source_id"] == elsewhere
        # Adding it again through a: refused, as on one service.
        with pytest.raises(AlreadyExists):
            await client.add_source(elsewhere, "test_pattern")
        # The SDK follows it: the unary call and the subscription both reach b.
        source = await client.get_source(elsewhere)
        assert source.spec.id == elsewhere
        async with client.subscribe(elsewhere, omit_jpeg=True) as frames:
            async for item in frames:
                if isinstance(item, Frame):
                    assert item.source_id == elsewhere
                    break
        assert elsewhere in running(b)
        assert elsewhere not in running(a)

    # The blocking client follows the same way.
    def blocking() -> tuple[str, str]:
        with DetectorClient(f"127.0.0.1:{a.port}") as sync:
            found = sync.get_source(elsewhere).id
            with sync.subscribe(elsewhere, omit_jpeg=True) as frames:
                for item in frames:
                    if isinstance(item, Frame):
                        return found, item.source_id
        raise AssertionError("the subscription ended without a frame")

    assert await asyncio.to_thread(blocking) == (elsewhere, elsewhere)


async def first_frame(client: AsyncDetectorClient, source_id: str) -> Frame:
    """Subscribe until a frame comes, as a viewer resuming after an outage does."""
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            async with client.subscribe(source_id, omit_jpeg=True) as frames:
                async for item in frames:
                    if isinstance(item, Frame):
                        return item
        except Unavailable:
            assert time.monotonic() < deadline, f"{source_id} never came back"
            await asyncio.sleep(0.2)


async def test_a_killed_replicas_sources_are_taken_over_and_viewers_resume(
    start: Start, postgres_url: str, tmp_path: pathlib.Path
) -> None:
    process, port_a = await asyncio.to_thread(spawn, tmp_path, postgres_url, "a")
    try:
        b = await start("b")
        target = f"ipv4:127.0.0.1:{port_a},127.0.0.1:{b.port}"
        async with AsyncDetectorClient(target) as client:
            await add_sources(client)
            await until(
                lambda: len(running(b)) == 2 and set(owners(postgres_url).values()) == {"a", "b"},
                "sources split between a and b",
            )
            on_a = sorted(sid for sid, owner in owners(postgres_url).items() if owner == "a")
            watched = on_a[0]
            viewer = await first_frame(client, watched)
            assert viewer.source_id == watched
            async with client.subscribe(watched, omit_jpeg=True) as frames:
                async for item in frames:
                    if isinstance(item, Frame):
                        break
                process.kill()
                killed = time.monotonic()
                # Ends with a's connection (UNAVAILABLE), or already ended when the source
                # moved just before: either way the viewer subscribes again.
                with contextlib.suppress(Unavailable):
                    async for _ in frames:
                        pass
            resumed = await first_frame(client, watched)
            took = time.monotonic() - killed
        assert resumed.source_id == watched
        assert set(on_a) <= running(b)
        assert set(owners(postgres_url).values()) == {"b"}
        print(f"takeover: {watched} streaming from b {took:.1f} s after a was killed")
    finally:
        process.kill()
        process.wait()


async def test_a_lease_lost_while_stalled_cannot_be_renewed(postgres_url: str) -> None:
    a = await asyncio.to_thread(PostgresSourceStore, postgres_url)
    b = await asyncio.to_thread(PostgresSourceStore, postgres_url)
    try:
        await a.put(pb.SourceSpec(id="cam", kind=pb.SOURCE_KIND_TEST_PATTERN))
        first = await a.claim("a", held=[], known=[], limit=5, lease_s=0.2)
        # Held: nobody else may take it.
        assert await b.claim("b", held=[], known=[], limit=5, lease_s=5.0) == {}
        await asyncio.sleep(0.5)  # a stalls past its lease
        second = await b.claim("b", held=[], known=[], limit=5, lease_s=5.0)
        assert second == {"cam": first["cam"] + 1}
        assert await a.renew("a", first, lease_s=5.0) == set()
        assert await b.renew("b", second, lease_s=5.0) == {"cam"}
    finally:
        await asyncio.to_thread(a.close)
        await asyncio.to_thread(b.close)


async def test_a_stopped_replica_hands_its_sources_back_for_the_others(
    start: Start, postgres_url: str
) -> None:
    a = await start("a")
    b = await start("b")
    async with AsyncDetectorClient(f"127.0.0.1:{b.port}") as client:
        await add_sources(client)
    await until(lambda: split(a, b), "sources split between a and b")
    on_a = running(a)
    await start.stop(a)
    # Released, not left to expire: b runs them all, and a holds nothing.
    assert set(owners(postgres_url).values()) <= {"b", None}
    await until(lambda: on_a <= running(b), "a's sources running on b")
    assert set(owners(postgres_url).values()) == {"b"}
