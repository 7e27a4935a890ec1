"""The recordings index in PostgreSQL, shared by every detector replica naming the database.

Replicas write their segments under one recordings directory they all see (a shared volume,
``recording_dir``), so whichever replica runs a source now, any replica lists, exports and
snapshots its whole recording, and the source's owner applies its retention to segments any
replica wrote. Paths are kept relative to that directory: each replica may mount it elsewhere.

Same contract as the SQLite ``SegmentIndex`` (``contract.py``): blocking calls, from any thread,
over a psycopg 3 pool. The tables carry the ``detector_rec_`` prefix and their own numbered
migrations (``detector_rec_schema``) under an advisory lock, so they evolve apart from the
sources' tables in the same database.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
from collections.abc import Sequence
from typing import Any

from detector_service.postgres_migrations import Connection, migrate
from detector_service.postgres_pool import open_pool
from detector_service.recording.contract import Coverage, Segment, coverage_of, segment_of
from vigil.core.urls import masked

log = logging.getLogger(__name__)

# Taken by whoever migrates, so replicas starting together do not race on CREATE TABLE.
_MIGRATION_LOCK = 0x5649_4749_4C52_4543  # "VIGILREC"
# Append only: the database keeps the number of the last one applied (detector_rec_schema).
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE detector_rec_segments (
        id bigserial PRIMARY KEY,
        source text NOT NULL,
        run integer NOT NULL,
        start_s double precision NOT NULL,
        end_s double precision NOT NULL,
        path text NOT NULL UNIQUE,
        bytes bigint NOT NULL,
        codec text NOT NULL,
        width integer NOT NULL,
        height integer NOT NULL,
        params text NOT NULL,
        writer text NOT NULL,
        closed boolean NOT NULL
    );
    CREATE INDEX detector_rec_segments_by_source ON detector_rec_segments (source, start_s);
    CREATE INDEX detector_rec_segments_by_start ON detector_rec_segments (start_s);
    CREATE TABLE detector_rec_holds (
        id bigserial PRIMARY KEY,
        source text NOT NULL,
        start_s double precision NOT NULL,
        end_s double precision NOT NULL,
        keep_until double precision NOT NULL,
        reason text NOT NULL
    );
    CREATE INDEX detector_rec_holds_by_source ON detector_rec_holds (source);
    CREATE TABLE detector_rec_detections (
        source text NOT NULL,
        at_s double precision NOT NULL,
        frame bytea NOT NULL
    );
    CREATE INDEX detector_rec_detections_by_source ON detector_rec_detections (source, at_s);
    """,
)

_COLUMNS = "id, source, run, start_s, end_s, path, bytes, codec, width, height, params, writer"
# A segment is held while a hold on its source overlaps it and has not expired (%(now)s).
_UNHELD = (
    "NOT EXISTS (SELECT 1 FROM detector_rec_holds h WHERE h.source = s.source"
    " AND h.start_s < s.end_s AND h.end_s > s.start_s AND h.keep_until > %(now)s)"
)


class RecordingIndexUnavailable(Exception):
    """The database cannot be used; the message names host and port, never a password."""


class PostgresSegmentIndex:
    def __init__(
        self,
        url: str,
        root: pathlib.Path,
        *,
        pool_size: int = 4,
        connect_timeout_s: float = 10.0,
    ) -> None:
        """Connect, bring the tables up to date and fill the pool (blocking). ``root``: the
        recordings directory the stored paths are relative to.

        Raises ``RecordingIndexUnavailable`` when the database cannot be reached or used."""
        self.root = root
        self._pool = open_pool(
            url,
            name="detector-recordings",
            pool_size=pool_size,
            connect_timeout_s=connect_timeout_s,
            setup=_migrate,
            unavailable=RecordingIndexUnavailable,
        )
        log.info("recordings indexed in %s, files under %s", masked(url), root)

    def close(self) -> None:
        self._pool.close()

    def _fetch(self, query: str, params: Any = ()) -> list[tuple[Any, ...]]:
        with self._pool.connection() as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description is not None else []

    def _stored(self, path: pathlib.Path) -> str:
        # Relative where it lies under the root (always, for the writers'); absolute otherwise.
        return str(path.relative_to(self.root)) if path.is_relative_to(self.root) else str(path)

    def begin(self, seg: Segment) -> Segment:
        rows = self._fetch(
            "INSERT INTO detector_rec_segments (source, run, start_s, end_s, path, bytes, codec,"
            " width, height, params, writer, closed)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, false) RETURNING id",
            (
                seg.source,
                seg.run,
                seg.start,
                seg.end,
                self._stored(seg.path),
                seg.bytes,
                seg.codec,
                seg.width,
                seg.height,
                seg.params,
                seg.writer,
            ),
        )
        return dataclasses.replace(seg, id=int(rows[0][0]))

    def finish(self, seg: Segment) -> None:
        self._fetch(
            "UPDATE detector_rec_segments SET start_s = %s, end_s = %s, bytes = %s, closed = true"
            " WHERE id = %s",
            (seg.start, seg.end, seg.bytes, seg.id),
        )

    def unfinished(self, source: str) -> list[Segment]:
        return self._select("WHERE source = %(source)s AND NOT closed", {"source": source})

    def run_for(self, source: str, params: str) -> int:
        rows = self._fetch(
            "SELECT run, params FROM detector_rec_segments WHERE source = %s"
            " ORDER BY start_s DESC LIMIT 1",
            (source,),
        )
        if not rows:
            return 1
        run, last_params = int(rows[0][0]), str(rows[0][1])
        return run if last_params == params else run + 1

    def segments(self, source: str, start: float, end: float) -> list[Segment]:
        return self._select(
            "WHERE source = %(source)s AND closed AND end_s > %(start)s AND start_s < %(end)s",
            {"source": source, "start": start, "end": end},
        )

    def all_segments(self, source: str) -> list[Segment]:
        return self._select("WHERE source = %(source)s AND closed", {"source": source})

    def coverage(self, source: str, start: float, end: float) -> Coverage:
        return coverage_of(self.segments(source, start, end), start, end)

    def source_bytes(self, source: str) -> int:
        rows = self._fetch(
            "SELECT COALESCE(SUM(bytes), 0) FROM detector_rec_segments WHERE source = %s",
            (source,),
        )
        return int(rows[0][0])

    def has_source(self, source: str) -> bool:
        rows = self._fetch(
            "SELECT 1 FROM detector_rec_segments WHERE source = %s LIMIT 1", (source,)
        )
        return bool(rows)

    def total_bytes(self) -> int:
        return int(self._fetch("SELECT COALESCE(SUM(bytes), 0) FROM detector_rec_segments")[0][0])

    def sources(self) -> list[str]:
        rows = self._fetch("SELECT DISTINCT source FROM detector_rec_segments ORDER BY source")
        return [str(row[0]) for row in rows]

    def hold(self, source: str, start: float, end: float, keep_until: float, reason: str) -> int:
        rows = self._fetch(
            "INSERT INTO detector_rec_holds (source, start_s, end_s, keep_until, reason)"
            " VALUES (%s, %s, %s, %s, %s) RETURNING id",
            (source, start, end, keep_until, reason),
        )
        return int(rows[0][0])

    def drop_holds(self, now: float) -> int:
        rows = self._fetch(
            "DELETE FROM detector_rec_holds WHERE keep_until <= %s RETURNING id", (now,)
        )
        return len(rows)

    def expired_unheld(self, source: str, before: float, now: float) -> list[Segment]:
        return self._select(
            f"WHERE source = %(source)s AND closed AND end_s < %(before)s AND {_UNHELD}",
            {"source": source, "before": before, "now": now},
        )

    def oldest_unheld(self, now: float, limit: int) -> list[Segment]:
        return self._select(f"WHERE closed AND {_UNHELD}", {"now": now}, limit=limit)

    def remove(self, segment_id: int) -> None:
        with self._pool.connection() as conn, conn.transaction():
            row = conn.execute(
                "DELETE FROM detector_rec_segments WHERE id = %s RETURNING source, start_s, end_s",
                (segment_id,),
            ).fetchone()
            if row is None:
                return  # another replica's retention removed it first
            source, start, end = row
            before = conn.execute(
                "SELECT COALESCE(MAX(end_s), 0) FROM detector_rec_segments"
                " WHERE source = %s AND end_s <= %s",
                (source, start),
            ).fetchone()
            assert before is not None
            conn.execute(
                "DELETE FROM detector_rec_detections"
                " WHERE source = %s AND at_s >= %s AND at_s < %s",
                (source, before[0], end),
            )

    def add_detections(self, rows: Sequence[tuple[str, float, bytes]]) -> None:
        if not rows:
            return
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO detector_rec_detections (source, at_s, frame) VALUES (%s, %s, %s)",
                rows,
            )

    def detections(self, source: str, start: float, end: float) -> list[bytes]:
        rows = self._fetch(
            "SELECT frame FROM detector_rec_detections WHERE source = %s AND at_s >= %s"
            " AND at_s < %s ORDER BY at_s",
            (source, start, end),
        )
        return [bytes(row[0]) for row in rows]

    def _select(
        self, where: str, args: dict[str, Any], *, limit: int | None = None
    ) -> list[Segment]:
        query = f"SELECT {_COLUMNS} FROM detector_rec_segments s {where} ORDER BY start_s, id"
        if limit is not None:
            query += " LIMIT %(limit)s"
            args = {**args, "limit": limit}
        return [segment_of(r, self.root / str(r[5])) for r in self._fetch(query, args)]


def _migrate(conn: Connection, place: str) -> None:
    migrate(
        conn,
        place,
        group="recording",
        lock=_MIGRATION_LOCK,
        migrations=_MIGRATIONS,
        table="detector_rec_schema",
    )
