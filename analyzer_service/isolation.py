"""Child processes that run media decoding, one call at a time each.

A decoder that crashes or hangs on a hostile file must fail only the call that fed it the file.
Each worker is its own spawned process, so a timeout or a cancelled call kills exactly that
process (and the next call starts a fresh one), never the service or the other workers' calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.context
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar, cast

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

# prctl(2) option: the signal a child gets when the thread that started it ends.
PR_SET_PDEATHSIG = 1


class WorkerCrashed(Exception):
    """The child died (a decoder crash, killed for memory) before answering."""


class WorkerTimeout(Exception):
    """The child did not answer in time and was killed."""


class RemoteError(Exception):
    """The function raised in the child; the message is the child's ``type: message``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def _die_with_parent() -> None:
    """Have the kernel kill this child when the service dies, even by SIGKILL (Linux).

    Otherwise a decoder busy on a long call outlives a killed service by up to a whole call,
    writing frames into a job directory that the restarted service is already reusing.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:
        os._exit(1)  # the service died before the line above took effect


def _child_main(conn: multiprocessing.connection.Connection, preload: Sequence[str]) -> None:
    _die_with_parent()
    for module in preload:
        importlib.import_module(module)
    while True:
        try:
            fn, args, kwargs = conn.recv()
        except EOFError:
            return
        try:
            reply: tuple[bool, Any] = (True, fn(*args, **kwargs))
        except Exception as exc:
            # Exceptions from C extensions do not always pickle; send plain strings.
            reply = (False, (type(exc).__name__, str(exc)))
        conn.send(reply)


class _Worker:
    # Started from the event loop's thread only: the child's PR_SET_PDEATHSIG fires when the
    # thread that started it ends, and that thread lives as long as the service.
    def __init__(self, ctx: multiprocessing.context.SpawnContext, preload: Sequence[str]) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_child_main, args=(child, tuple(preload)), daemon=True)
        self.process.start()
        child.close()

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Blocking round trip; runs in a thread so the event loop stays free."""
        try:
            # A child that died before the call reached it breaks the pipe on send (EPIPE), one
            # that dies during the call ends it on recv (EOF): the same crash to the caller.
            self.conn.send((fn, args, kwargs))
            ok, value = self.conn.recv()
        except (EOFError, OSError) as exc:
            raise WorkerCrashed(f"exit code {self.process.exitcode}") from exc
        if not ok:
            raise RemoteError(*value)
        return value

    def kill(self) -> None:
        self.process.kill()
        self.process.join(5)
        self.conn.close()


class MediaWorkers:
    """A fixed number of worker processes; callers wait for a free one."""

    def __init__(self, size: int, preload: Sequence[str] = ()) -> None:
        # spawn, not fork: the parent runs threads (gRPC, SQLite) that fork would copy mid-flight.
        self._ctx = multiprocessing.get_context("spawn")
        self._preload = tuple(preload)
        # None is a slot whose process has not been started (or was killed) yet.
        self._idle: asyncio.Queue[_Worker | None] = asyncio.Queue(maxsize=size)
        for _ in range(size):
            self._idle.put_nowait(None)
        self._busy: set[_Worker] = set()
        self._closed = False

    async def call(
        self, limit_s: float, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``fn(*args, **kwargs)`` in a child; raise WorkerTimeout/WorkerCrashed/RemoteError."""
        if self._closed:
            raise WorkerCrashed("media workers are shut down")
        worker = await self._idle.get()
        try:
            if worker is None or not worker.process.is_alive():
                # Starting is a fork+exec (milliseconds); the child imports in its own time.
                worker = _Worker(self._ctx, self._preload)
            self._busy.add(worker)
            try:
                result = await asyncio.wait_for(
                    asyncio.to_thread(worker.call, fn, args, kwargs), limit_s
                )
            except BaseException as exc:
                # Timed out, crashed or cancelled mid-call: the child may still be decoding or be
                # in a bad state, so it is killed rather than handed on. A Python exception
                # raised by the function leaves the child healthy.
                self._busy.discard(worker)
                if not isinstance(exc, RemoteError):
                    doomed, worker = worker, None
                    await asyncio.shield(asyncio.to_thread(doomed.kill))
                if isinstance(exc, TimeoutError):
                    raise WorkerTimeout(f"no answer within {limit_s:g} s") from None
                raise
            self._busy.discard(worker)
            return cast(T, result)
        finally:
            self._idle.put_nowait(worker)

    def warm_up(self) -> None:
        """Start the processes now so the first upload does not pay for interpreter start-up."""
        workers = [self._idle.get_nowait() for _ in range(self._idle.qsize())]
        for worker in workers:
            self._idle.put_nowait(worker or _Worker(self._ctx, self._preload))

    async def close(self) -> None:
        self._closed = True
        workers = list(self._busy)
        while not self._idle.empty():
            worker = self._idle.get_nowait()
            if worker is not None:
                workers.append(worker)
        for worker in workers:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(worker.kill)
