"""``JobStore`` in an embedded SQLite file.

One connection on one dedicated thread: SQLite serialises writers anyway, the event loop never
blocks on disk, and calls run in the order they were made, so events are numbered in the order
they were emitted. Leases work as on PostgreSQL, with this process's clock; the file belongs to
one analyzer, so no other store ever writes to it and ``watch`` has nothing to tell.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import pathlib
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from analyzer_service.store import (
    UNFINISHED_STATES,
    ChatTurn,
    Event,
    Lease,
    LeaseLost,
    Listener,
    Renewal,
    decode_page_token,
    encode_page_token,
    turn_from_json,
    turn_to_json,
)
from vigil.analyzer.v1 import analyzer_service_pb2 as pb

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS videos (
    id TEXT PRIMARY KEY,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    video_id TEXT NOT NULL,
    state INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, seq);
-- Leases (see JobStore.claim) and the queue position last announced.
CREATE TABLE IF NOT EXISTS leases (
    job_id TEXT PRIMARY KEY,
    owner TEXT,
    token INTEGER NOT NULL DEFAULT 0,
    expires REAL NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    announced INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (job_id, sequence)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS chat_turns (
    job_id TEXT NOT NULL,
    turn INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (job_id, turn)
) WITHOUT ROWID;
"""


class SQLiteJobStore:
    def __init__(self, path: pathlib.Path) -> None:
        self._path = path
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sqlite")
        self._db: sqlite3.Connection | None = None

    @classmethod
    async def open(cls, path: pathlib.Path) -> SQLiteJobStore:
        store = cls(path)
        await store._run(store._connect)
        return store

    def _connect(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        # WAL with synchronous=NORMAL survives process crashes; only a power cut may lose the
        # last transactions, which is fine for progress events.
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        db.executescript(_SCHEMA)
        # Jobs of files made before leases existed get their (free) lease rows.
        db.execute("INSERT OR IGNORE INTO leases (job_id) SELECT id FROM jobs")
        self._db = db

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("store is closed")
        return self._db

    async def create_video(self, video: pb.Video) -> None:
        def go() -> None:
            self.db.execute(
                "INSERT INTO videos (id, data) VALUES (?, ?)", (video.id, video.SerializeToString())
            )

        await self._run(go)

    async def get_video(self, video_id: str) -> pb.Video | None:
        def go() -> pb.Video | None:
            row = self.db.execute("SELECT data FROM videos WHERE id = ?", (video_id,)).fetchone()
            return None if row is None else pb.Video.FromString(row[0])

        return await self._run(go)

    async def create_job(
        self, job: pb.Job, *, owner: str | None = None, lease_s: float = 0.0
    ) -> Lease | None:
        def go() -> Lease | None:
            with self._transaction() as db:
                db.execute(
                    "INSERT INTO jobs (id, video_id, state, data) VALUES (?, ?, ?, ?)",
                    (job.id, job.video.id, job.state, job.SerializeToString()),
                )
                db.execute(
                    "INSERT OR REPLACE INTO leases (job_id, owner, token, expires)"
                    " VALUES (?, ?, ?, ?)",
                    (job.id, owner, 0 if owner is None else 1, time.time() + lease_s),
                )
            return None if owner is None else Lease(job, owner, 1)

        return await self._run(go)

    async def get_job(self, job_id: str) -> pb.Job | None:
        def go() -> pb.Job | None:
            row = self.db.execute("SELECT data FROM jobs WHERE id = ?", (job_id,)).fetchone()
            return None if row is None else pb.Job.FromString(row[0])

        return await self._run(go)

    def _save_job(self, job: pb.Job) -> None:
        cursor = self.db.execute(
            "UPDATE jobs SET state = ?, data = ? WHERE id = ?",
            (job.state, job.SerializeToString(), job.id),
        )
        if cursor.rowcount != 1:
            raise KeyError(job.id)

    def _fence(self, job_id: str, lease: Lease | None) -> None:
        if lease is None:
            return
        row = self.db.execute(
            "SELECT owner, token FROM leases WHERE job_id = ?", (job_id,)
        ).fetchone()
        if row is None or tuple(row) != (lease.owner, lease.token):
            raise LeaseLost(job_id)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    async def update_job(self, job: pb.Job, *, lease: Lease | None = None) -> None:
        snapshot = pb.Job()
        snapshot.CopyFrom(job)

        def go() -> None:
            with self._transaction():
                self._fence(snapshot.id, lease)
                self._save_job(snapshot)

        await self._run(go)

    async def append_event(
        self, event: Event, *, job: pb.Job | None = None, lease: Lease | None = None
    ) -> Event:
        stored = Event()
        stored.CopyFrom(event)
        if not stored.HasField("time"):
            stored.time.GetCurrentTime()
        # Copies taken now: the caller may change its job while the write waits its turn.
        snapshot: pb.Job | None = None
        if job is not None:
            snapshot = pb.Job()
            snapshot.CopyFrom(job)

        def go() -> Event:
            with self._transaction():
                self._fence(stored.job_id, lease)
                self._insert_event(stored)
                if snapshot is not None:
                    self._save_job(snapshot)
            return stored

        return await self._run(go)

    def _insert_event(self, stored: Event) -> None:
        (last,) = self.db.execute(
            "SELECT COALESCE(MAX(sequence), 0) FROM events WHERE job_id = ?", (stored.job_id,)
        ).fetchone()
        stored.sequence = last + 1
        self.db.execute(
            "INSERT INTO events (job_id, sequence, data) VALUES (?, ?, ?)",
            (stored.job_id, stored.sequence, stored.SerializeToString()),
        )

    async def claim(
        self, owner: str, *, lease_s: float, limit: int, job_id: str | None = None
    ) -> list[Lease]:
        def go() -> list[Lease]:
            now = time.time()
            with self._transaction() as db:
                rows = db.execute(
                    "SELECT jobs.id, jobs.data, leases.token, leases.cancel_requested"
                    " FROM jobs JOIN leases ON leases.job_id = jobs.id"
                    " WHERE jobs.state IN (?, ?) AND (leases.owner IS NULL OR leases.expires < ?)"
                    " AND (? IS NULL OR jobs.id = ?) ORDER BY jobs.seq LIMIT ?",
                    (*UNFINISHED_STATES, now, job_id, job_id, limit),
                ).fetchall()
                leases = []
                for claimed, data, token, cancel in rows:
                    db.execute(
                        "UPDATE leases SET owner = ?, token = ?, expires = ? WHERE job_id = ?",
                        (owner, token + 1, now + lease_s, claimed),
                    )
                    leases.append(Lease(pb.Job.FromString(data), owner, token + 1, bool(cancel)))
                return leases

        return await self._run(go)

    async def renew(self, lease: Lease, *, lease_s: float) -> Renewal:
        def go() -> Renewal:
            with self._transaction() as db:
                row = db.execute(
                    "UPDATE leases SET expires = ? WHERE job_id = ? AND owner = ? AND token = ?"
                    " RETURNING cancel_requested",
                    (time.time() + lease_s, lease.job.id, lease.owner, lease.token),
                ).fetchone()
            if row is None:
                return Renewal.LOST
            return Renewal.CANCEL if row[0] else Renewal.HELD

        return await self._run(go)

    async def release(self, owner: str) -> None:
        def go() -> None:
            self.db.execute("UPDATE leases SET owner = NULL, expires = 0 WHERE owner = ?", (owner,))

        await self._run(go)

    async def request_cancel(self, job_id: str) -> None:
        def go() -> None:
            self.db.execute("UPDATE leases SET cancel_requested = 1 WHERE job_id = ?", (job_id,))

        await self._run(go)

    def _waiting(self) -> list[tuple[str, int, int]]:
        rows = self.db.execute(
            "SELECT jobs.id, leases.announced FROM jobs JOIN leases ON leases.job_id = jobs.id"
            " WHERE jobs.state = ? AND (leases.owner IS NULL OR leases.expires < ?)"
            " ORDER BY jobs.seq",
            (pb.JOB_STATE_QUEUED, time.time()),
        ).fetchall()
        return [(job_id, position, announced) for position, (job_id, announced) in
                enumerate(rows, start=1)]  # fmt: skip

    async def queue_positions(self) -> dict[str, int]:
        def go() -> dict[str, int]:
            return {job_id: position for job_id, position, _ in self._waiting()}

        return await self._run(go)

    async def announce_queue(self, make: Callable[[int], Event]) -> list[Event]:
        def go() -> list[Event]:
            announced = []
            with self._transaction() as db:
                for job_id, position, last in self._waiting():
                    if position == last:
                        continue
                    db.execute(
                        "UPDATE leases SET announced = ? WHERE job_id = ?", (position, job_id)
                    )
                    stored = make(position)
                    stored.job_id = job_id
                    stored.time.GetCurrentTime()
                    self._insert_event(stored)
                    announced.append(stored)
            return announced

        return await self._run(go)

    def watch(self, listener: Listener) -> None:
        """Nothing to tell: no other store writes to this file."""

    async def list_events(self, job_id: str, after_sequence: int, limit: int) -> list[Event]:
        def go() -> list[Event]:
            rows = self.db.execute(
                "SELECT data FROM events WHERE job_id = ? AND sequence > ?"
                " ORDER BY sequence LIMIT ?",
                (job_id, after_sequence, limit),
            ).fetchall()
            return [Event.FromString(data) for (data,) in rows]

        return await self._run(go)

    async def list_jobs(
        self, *, page_size: int, page_token: str, state: pb.JobState.ValueType
    ) -> tuple[list[pb.Job], str]:
        before = decode_page_token(page_token) if page_token else None

        def go() -> tuple[list[pb.Job], str]:
            sql = "SELECT seq, data FROM jobs WHERE 1=1"
            params: list[int] = []
            if before is not None:
                sql += " AND seq < ?"
                params.append(before)
            if state != pb.JOB_STATE_UNSPECIFIED:
                sql += " AND state = ?"
                params.append(state)
            sql += " ORDER BY seq DESC LIMIT ?"
            # One more than asked tells whether there is a next page.
            params.append(page_size + 1)
            rows = self.db.execute(sql, params).fetchall()
            jobs = [pb.Job.FromString(data) for _, data in rows[:page_size]]
            token = encode_page_token(rows[page_size - 1][0]) if len(rows) > page_size else ""
            return jobs, token

        return await self._run(go)

    async def unfinished_jobs(self) -> list[pb.Job]:
        def go() -> list[pb.Job]:
            rows = self.db.execute(
                "SELECT data FROM jobs WHERE state IN (?, ?) ORDER BY seq", UNFINISHED_STATES
            ).fetchall()
            return [pb.Job.FromString(data) for (data,) in rows]

        return await self._run(go)

    async def append_chat_turn(self, job_id: str, turn: ChatTurn) -> None:
        data = turn_to_json(turn)

        def go() -> None:
            with self._transaction() as db:
                (last,) = db.execute(
                    "SELECT COALESCE(MAX(turn), 0) FROM chat_turns WHERE job_id = ?", (job_id,)
                ).fetchone()
                db.execute(
                    "INSERT INTO chat_turns (job_id, turn, data) VALUES (?, ?, ?)",
                    (job_id, last + 1, data),
                )

        await self._run(go)

    async def chat_turns(self, job_id: str, *, last: int | None = None) -> list[ChatTurn]:
        def go() -> list[ChatTurn]:
            sql = "SELECT data FROM chat_turns WHERE job_id = ? ORDER BY turn DESC"
            params: list[str | int] = [job_id]
            if last is not None:
                sql += " LIMIT ?"
                params.append(last)
            rows = self.db.execute(sql, params).fetchall()
            return [turn_from_json(data) for (data,) in reversed(rows)]

        return await self._run(go)

    async def close(self) -> None:
        def go() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await self._run(go)
        self._executor.shutdown(wait=True)
