"""How the PostgreSQL job store reaches its database, and what it says when it cannot.

Separate from the store's queries because it is about the connection, not the jobs: the pooled
connection that turns a database restarting, failing over or out of reach into ``Unavailable``
(retryable), the host:port a URL points at and what libpq said, both for messages that never carry
a password. The store and its LISTEN/NOTIFY watcher share these.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from analyzer_service.postgres_schema import Connection
from vigil.core.errors import Unavailable
from vigil.core.urls import redact

# What a lost connection looks like: a database restarting, failing over or out of reach.
# (PoolTimeout is one too: no connection came back within the pool's timeout.)
GONE = (psycopg.OperationalError, psycopg.InterfaceError)


def where(url: str) -> str:
    """The host:port (or several) a libpq URL points at, for messages."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error:
        return "an unreadable address"
    # No host: libpq's default Unix socket.
    hosts = str(params.get("host") or os.environ.get("PGHOST") or "local socket").split(",")
    ports = str(params.get("port") or os.environ.get("PGPORT") or "").split(",")
    # libpq: one port for all hosts, or one per host; an empty one is the default.
    ports = ports * len(hosts) if len(ports) == 1 else ports
    return ", ".join(f"{h}:{p or 5432}" for h, p in zip(hosts, ports, strict=False))


def said(exc: BaseException, url: str) -> str:
    """What the database or libpq said, on one line and without the URL's passwords."""
    return " ".join(redact(str(exc), url).split()) or type(exc).__name__


@contextlib.asynccontextmanager
async def pooled(pool: AsyncConnectionPool[Connection], url: str) -> AsyncIterator[Connection]:
    """A pooled connection; a database out of reach becomes ``Unavailable`` (retryable: the
    pool reconnects when it is back). Whether a write that failed so was kept is unknown."""
    try:
        async with pool.connection() as conn:
            yield conn
    except GONE as exc:
        raise Unavailable(
            f"the job database (PostgreSQL at {where(url)}) is out of reach"
            f" ({said(exc, url)}); try again"
        ) from None
