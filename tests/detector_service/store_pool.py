"""The stores a store-contract test opens, on SQLite in a file or on PostgreSQL (a real server,
one fresh database per test), as restarts or replicas would: one fixture body for every store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, Protocol, TypeVar

import pytest


class Closable(Protocol):
    def close(self) -> None: ...


S = TypeVar("S", bound=Closable)


class StorePool(Generic[S]):
    """Opens stores on one database (or file), as restarts or replicas would; closes them all."""

    def __init__(self, make: Callable[..., S]) -> None:
        self._make = make
        self._open: list[S] = []

    def open(self, *args: object, **kwargs: object) -> S:
        store = self._make(*args, **kwargs)
        self._open.append(store)
        return store

    def close(self, store: S) -> None:
        self._open.remove(store)
        store.close()

    def close_all(self) -> None:
        while self._open:
            self.close(self._open[-1])


def opened_stores(
    request: pytest.FixtureRequest, sqlite: Callable[..., S], postgres: Callable[..., S]
) -> Iterator[StorePool[S]]:
    """For a fixture parametrized "sqlite"/"postgres": `postgres` takes the database URL first,
    then what `open` is given."""
    make = sqlite
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")

        def make(*args: object, **kwargs: object) -> S:
            return postgres(url, *args, **kwargs)

    opened = StorePool(make)
    yield opened
    opened.close_all()
