"""Analysis sessions for one client, whatever carries them (``/ws/session`` or Socket.IO).

A transport hands each incoming event to ``SessionClient.handle`` and gives it an ``emit``
coroutine for outgoing ones. Client events:

* ``join_session`` {job_id | session_id, after_sequence?}: follow a job. Its events so far are
  replayed, then it is followed live (the analyzer's ``StreamAnalysisEvents``). With
  ``after_sequence`` (alias ``last_sequence``) only later events come, so a reconnecting client
  gets no duplicates. A ``session_id`` is a name bound to a job by ``POST /api/analyses`` or an
  upload with ``?session_id=``; joining one before its job exists waits for it (the seed's flow:
  join first, then upload). Answered with ``session_joined`` {session_id, job_id}.
* ``leave_session``: stop following (the job goes on); answered with ``session_left``.
* ``ping``: answered with ``pong`` {server_time, ...the ping's data}.
* ``chat`` {question, job_id?, max_tokens?}: ask about the joined (or named) job; the answer
  streams as ``chat_response`` events.

Joining never starts a job, and leaving or disconnecting never cancels one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bridge.errors import translate
from bridge.events import chat_chunk, error_data, job_event
from bridge.state import BridgeState
from vigil.core.errors import NotFound, Unavailable, VigilError

log = logging.getLogger(__name__)

Emit = Callable[[str, dict[str, Any]], Awaitable[None]]


class _Join(BaseModel):
    model_config = ConfigDict(extra="ignore")
    session_id: str | None = Field(default=None, min_length=1, max_length=128)
    job_id: str | None = Field(default=None, min_length=1, max_length=128)
    after_sequence: int | None = Field(default=None, ge=0)
    last_sequence: int | None = Field(default=None, ge=0)


class _Chat(BaseModel):
    model_config = ConfigDict(extra="ignore")
    question: str = Field(min_length=1, max_length=4000)
    job_id: str | None = Field(default=None, min_length=1, max_length=128)
    session_id: str | None = Field(default=None, min_length=1, max_length=128)
    max_tokens: int = Field(default=0, ge=0, le=8192)


def _invalid(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}" if where else first["msg"]


async def _quietly(work: Callable[[], Awaitable[None]]) -> None:
    """Run a client's task; a client that went away mid-send just ends it. (A factory, so a task
    cancelled before it starts leaves no coroutine un-awaited.)"""
    try:
        await work()
    except (OSError, RuntimeError) as e:  # sending to a closed socket
        log.debug("session task ended: %r", e)
    except Exception:
        log.exception("session task failed")


class SessionClient:
    def __init__(self, state: BridgeState, emit: Emit) -> None:
        self.state = state
        self.emit = emit
        self.session_id: str | None = None
        self.job_id: str | None = None
        self.last_sequence = 0
        self._follow: asyncio.Task[None] | None = None
        self._chat: asyncio.Task[None] | None = None

    async def handle(self, event: str, data: Any) -> None:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            await self.error("INVALID_MESSAGE", f"the data of {event!r} must be an object")
            return
        if event == "join_session":
            await self._join(data)
        elif event == "leave_session":
            await self._leave()
            await self.emit("session_left", {"session_id": self.session_id})
        elif event == "ping":
            await self.emit("pong", {**data, "server_time": time.time()})
        elif event == "chat":
            await self._start_chat(data)
        else:
            known = "join_session, leave_session, ping, chat"
            await self.error("UNKNOWN_EVENT", f"unknown event {event[:64]!r}; known: {known}")

    async def error(self, code: str, message: str, **extra: Any) -> None:
        await self.emit("error", error_data(code, message, **extra))

    async def close(self) -> None:
        """The client went away: stop its tasks (never its jobs)."""
        tasks = [t for t in (self._follow, self._chat) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _join(self, data: dict[str, Any]) -> None:
        try:
            join = _Join.model_validate(data)
        except ValidationError as e:
            await self.error("INVALID_ARGUMENT", _invalid(e))
            return
        name = join.session_id or join.job_id
        if name is None:
            await self.error("INVALID_ARGUMENT", "join_session needs a session_id or a job_id")
            return
        after = join.after_sequence if join.after_sequence is not None else join.last_sequence
        previous_job = self.job_id
        await self._leave()
        job_id = join.job_id or await self._bound_job(name)
        if after is None:
            # Joining the same job again on this connection resumes where it left off.
            after = self.last_sequence if job_id is not None and job_id == previous_job else 0
        self.session_id, self.job_id, self.last_sequence = name, job_id, after
        await self.emit(
            "session_joined", {"session_id": name, "job_id": job_id, "after_sequence": after}
        )
        may_wait = join.job_id is None
        self._follow = asyncio.create_task(
            _quietly(lambda: self._follow_job(name, job_id, may_wait))
        )

    async def _bound_job(self, name: str) -> str | None:
        """The job ``name`` is bound to; None when it is not bound yet, or when the names cannot be
        reached (Redis away): then the client is told, and the join waits for the name as it
        waits for one not bound yet."""
        try:
            return await self.state.sessions.get(name)
        except Unavailable as e:
            await self.error(e.code, e.message + "; waiting for it", session_id=name)
            return None

    async def _leave(self) -> None:
        task, self._follow = self._follow, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _follow_job(self, name: str, job_id: str | None, may_wait: bool) -> None:
        """Replay, then follow live; on an outage retry from the last sequence sent."""
        if job_id is None:
            job_id = name
            if may_wait and not await self._job_exists(job_id):
                job_id = await self.state.sessions.wait(name)
                self.job_id = job_id
        backoff = self.state.settings.retry_backoff()
        told = False
        while True:
            stream = self.state.analyzer.events(job_id, after_sequence=self.last_sequence)
            try:
                async for event in stream:
                    if event.sequence <= self.last_sequence:
                        continue  # never send a client the same event twice
                    name_, data = job_event(event, name)
                    self.last_sequence = event.sequence
                    backoff.reset()
                    told = False
                    await self.emit(name_, data)
                return  # the job ended
            except VigilError as e:
                failure = translate(e, "analyzer")
                if failure.final:
                    await self.error(failure.code, failure.message, session_id=name)
                    return
                if not told:
                    await self.error(failure.code, failure.message + "; retrying", session_id=name)
                    told = True
            finally:
                stream.cancel()
            await asyncio.sleep(backoff.next())

    async def _job_exists(self, job_id: str) -> bool:
        try:
            await self.state.analyzer.get_job(job_id)
        except NotFound:
            return False
        except VigilError:
            pass  # unknown for now: following it will tell
        return True

    async def _start_chat(self, data: dict[str, Any]) -> None:
        try:
            chat = _Chat.model_validate(data)
        except ValidationError as e:
            await self.error("INVALID_ARGUMENT", _invalid(e))
            return
        job_id = chat.job_id
        if job_id is None and chat.session_id is not None:
            try:
                job_id = await self.state.sessions.get(chat.session_id)
            except Unavailable as e:
                await self.error(e.code, e.message, session_id=chat.session_id)
                return
        job_id = job_id or self.job_id
        if job_id is None:
            await self.error("NO_SESSION", "join a session (or name a job_id) before chatting")
            return
        if self._chat is not None and not self._chat.done():
            await self.error("CHAT_IN_PROGRESS", "wait for the current answer to finish")
            return
        question, max_tokens = chat.question, chat.max_tokens
        self._chat = asyncio.create_task(
            _quietly(lambda: self._run_chat(job_id, question, max_tokens))
        )

    async def _run_chat(self, job_id: str, question: str, max_tokens: int) -> None:
        stream = self.state.analyzer.chat(job_id, question, max_tokens=max_tokens)
        try:
            async for chunk in stream:
                await self.emit("chat_response", chat_chunk(chunk, job_id))
        except VigilError as e:
            failure = translate(e, "analyzer")
            await self.error(failure.code, failure.message, job_id=job_id)
        finally:
            stream.cancel()
