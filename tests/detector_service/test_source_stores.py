"""The source-store contract, run against both stores: SQLite in a file and PostgreSQL (a real
server, one fresh database per test): kept sources in the order added, replaced by id, forgotten,
overrides of configured sources, and what survives reopening (a restart, or another replica)."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import Iterator

import pytest

from detector_service.postgres_sources import PostgresSourceStore
from detector_service.source_store import SourceStore
from detector_service.source_stores import SourceKeeping
from tests.detector_service.store_pool import StorePool, opened_stores
from vigil.core.errors import AlreadyExists
from vigil.detector.v1 import detector_service_pb2 as pb

Stores = StorePool[SourceKeeping]


@pytest.fixture(params=["sqlite", "postgres"])
def stores(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[Stores]:
    path = tmp_path / "data" / "sources.sqlite3"

    def sqlite() -> SourceKeeping:
        return SourceStore(path)

    def postgres(url: str) -> SourceKeeping:
        return PostgresSourceStore(url, pool_size=2)

    yield from opened_stores(request, sqlite, postgres)


@pytest.fixture
def store(stores: Stores) -> SourceKeeping:
    return stores.open()


def spec(source_id: str, uri: str = "rtsp://user:secret@cam/1") -> pb.SourceSpec:
    return pb.SourceSpec(id=source_id, kind=pb.SOURCE_KIND_STREAM, uri=uri)


async def test_kept_sources_come_back_in_the_order_added(store: SourceKeeping) -> None:
    for source_id in ("b", "a", "c"):
        await store.put(spec(source_id))
    assert [s.id for s in await asyncio.to_thread(store.load)] == ["b", "a", "c"]
    # Real URIs are kept: the camera must be reopened after a restart.
    assert (await asyncio.to_thread(store.load))[0].uri == "rtsp://user:secret@cam/1"


async def test_a_put_replaces_the_source_of_its_id(store: SourceKeeping) -> None:
    await store.put(spec("a", "rtsp://cam/old"))
    await store.put(spec("a", "rtsp://cam/new"))
    assert [s.uri for s in await asyncio.to_thread(store.load)] == ["rtsp://cam/new"]


async def test_delete_forgets_and_says_whether_there_was_one(store: SourceKeeping) -> None:
    await store.put(spec("a"))
    assert await store.delete("a") is True
    assert await store.delete("a") is False
    assert await asyncio.to_thread(store.load) == []


async def test_writes_run_in_the_order_asked(store: SourceKeeping) -> None:
    # Not awaited one by one: an add and a quick remove of the same id must not swap.
    await asyncio.gather(store.put(spec("a")), store.delete("a"), store.put(spec("b")))
    assert [s.id for s in await asyncio.to_thread(store.load)] == ["b"]


async def test_overrides_keep_their_base_and_are_forgotten(store: SourceKeeping) -> None:
    base, update = spec("cfg", "rtsp://cam/a"), spec("cfg", "rtsp://cam/b")
    await store.put_override(base, update)
    assert await asyncio.to_thread(store.load_overrides) == [(base, update)]
    await store.put_override(base, spec("cfg", "rtsp://cam/c"))
    assert [s.uri for _, s in await asyncio.to_thread(store.load_overrides)] == ["rtsp://cam/c"]
    await store.delete_override("cfg")
    assert await asyncio.to_thread(store.load_overrides) == []
    # Deleting a configured source's id forgets its override too.
    await store.put_override(base, update)
    assert await store.delete("cfg") is True
    assert await asyncio.to_thread(store.load_overrides) == []


async def test_what_is_kept_survives_reopening(stores: Stores) -> None:
    first = stores.open()
    await first.put(spec("a"))
    await first.put_override(spec("cfg"), spec("cfg", "rtsp://cam/b"))
    await asyncio.to_thread(stores.close, first)
    again = stores.open()
    assert [s.id for s in await asyncio.to_thread(again.load)] == ["a"]
    assert len(await asyncio.to_thread(again.load_overrides)) == 1


async def test_a_second_store_on_the_same_database_sees_the_writes(stores: Stores) -> None:
    first, second = stores.open(), stores.open()
    await first.put(spec("a"))
    await second.put(spec("b"))
    assert [s.id for s in await asyncio.to_thread(first.load)] == ["a", "b"]
    assert await second.delete("a") is True
    assert [s.id for s in await asyncio.to_thread(first.load)] == ["b"]


async def test_of_two_stores_adding_one_id_at_once_exactly_one_succeeds(stores: Stores) -> None:
    first, second = stores.open(), stores.open()
    for _ in range(10):  # many rounds: the two transactions overlap in some
        results = await asyncio.gather(
            first.add(spec("a", "rtsp://cam/first")),
            second.add(spec("a", "rtsp://cam/second")),
            return_exceptions=True,
        )
        refused = [r for r in results if isinstance(r, AlreadyExists)]
        assert len(refused) == 1, results
        assert results.count(None) == 1, results
        kept = await asyncio.to_thread(first.load)
        winner = "rtsp://cam/first" if results[0] is None else "rtsp://cam/second"
        assert [s.uri for s in kept] == [winner]
        assert await second.delete("a") is True
