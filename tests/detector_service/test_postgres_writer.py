"""The writer that keeps writes while PostgreSQL is away: bounded, it drops (counting and saying
so) rather than waits once full; what it kept runs, in order, once the database answers."""

from __future__ import annotations

import functools
import logging

import psycopg
import pytest

from detector_service.postgres_writer import BacklogFull, RetryingWriter
from vigil.devtools.postgres import free_port


def test_a_full_backlog_drops_counts_and_says_so(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    away = f"postgresql://127.0.0.1:{free_port()}/nothing"
    url = [away]
    done: list[int] = []

    def write(n: int) -> None:
        with psycopg.connect(url[0], connect_timeout=1):
            done.append(n)

    writer = RetryingWriter("test writer", str, limit=2)
    kept = [writer.write(functools.partial(write, n), f"write {n}") for n in range(2)]
    dropped = writer.write(lambda: write(2), "write 2")
    assert isinstance(dropped.exception(0), BacklogFull)
    assert writer.dropped == 1
    assert any("dropped write 2 (1 dropped so far)" in r.getMessage() for r in caplog.records)
    url[0] = postgres_url  # the database is back
    for future in kept:
        future.result(60)
    assert done == [0, 1]
    writer.close()
