"""Opening one of the detector's PostgreSQL stores: its tables brought up to date over a one-off
connection, then a pool of connections, every failure named by host and port, never a password.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from detector_service.postgres_migrations import Connection, SchemaTooNew
from vigil.core.urls import masked, redact

Pool = ConnectionPool[Connection]
SCHEMES = ("postgresql://", "postgres://")


def postgres_url(settings_url: str, unavailable: type[Exception]) -> str:
    """The PostgreSQL URL the detector's settings name, or "" for the embedded SQLite stores;
    ``unavailable`` for a URL that is not PostgreSQL's."""
    if settings_url and not settings_url.startswith(SCHEMES):
        raise unavailable(
            "VIGIL_DETECTOR_DATABASE_URL must start with postgresql://,"
            f" not {masked(settings_url)!r}"
        )
    return settings_url


def place_of(url: str) -> str:
    return f"PostgreSQL at {masked(url)}"


def said(exc: BaseException, url: str) -> str:
    """What ``exc`` says, on one line, with ``url``'s password taken out."""
    return " ".join(redact(str(exc), url).split()) or type(exc).__name__


def open_pool(
    url: str,
    *,
    name: str,
    pool_size: int,
    connect_timeout_s: float,
    setup: Callable[[Connection, str], None],
    unavailable: type[Exception],
) -> Pool:
    """Run ``setup`` (the migrations: given the connection and the place to name in errors) on
    a connection of its own, then open a pool of ``pool_size`` (blocking). Raises
    ``unavailable`` when the database cannot be reached or refuses the tables."""
    place = place_of(url)
    timeout = max(1, round(connect_timeout_s))
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=timeout) as conn:
            setup(conn, place)
    except SchemaTooNew as exc:
        raise unavailable(str(exc)) from None
    except psycopg.Error as exc:
        raise unavailable(f"cannot use {place} ({said(exc, url)})") from None
    pool: Pool = ConnectionPool(
        url,
        kwargs={"autocommit": True, "connect_timeout": timeout},
        min_size=1,
        max_size=pool_size,
        open=False,
        # Connections broken by a database restart are replaced before use.
        check=ConnectionPool.check_connection,
        name=name,
        timeout=connect_timeout_s,
    )
    try:
        pool.open(wait=True, timeout=connect_timeout_s)
    except PoolTimeout:
        pool.close()
        raise unavailable(f"cannot connect to {place}") from None
    return pool
