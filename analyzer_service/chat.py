"""Questions about an analysed video, answered by the model from its sampled frames and timeline.

A job can be asked about as soon as its frames are sampled (past 50%): the frames store says
whether they are, and holds them with the timeline. The conversation of a job is kept in the
store; its last turns go into the next prompt as real chat turns, the frames and the facts with
the first. Answers stream as they are generated; a caller that goes away aborts the generation.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator

from analyzer_service import prompting, timeline
from analyzer_service.engine import GenerateRequest, Priority
from analyzer_service.frames import FramesStore
from analyzer_service.generation import Model
from analyzer_service.settings import AnalyzerSettings
from analyzer_service.store import ChatTurn, JobStore
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.core.errors import FailedPrecondition, InvalidInput


class NotSampledYet(FailedPrecondition):
    code = "FRAMES_NOT_READY"


class Chat:
    def __init__(
        self,
        *,
        settings: AnalyzerSettings,
        store: JobStore,
        model: Model,
        frames: FramesStore,
    ) -> None:
        self.settings = settings
        self.store = store
        self.model = model
        self.frames = frames

    def check_question(self, question: str) -> str:
        question = question.strip()
        if not question:
            raise InvalidInput("the question is empty")
        if len(question) > self.settings.max_question_chars:
            raise InvalidInput(
                f"the question is longer than {self.settings.max_question_chars} characters"
            )
        return question

    def max_tokens(self, asked: int) -> int:
        limit = max(self.settings.max_tokens, self.settings.chat_max_tokens)
        return min(asked or self.settings.chat_max_tokens, limit)

    async def request(self, job: pb.Job, question: str, max_tokens: int) -> GenerateRequest:
        """The prompt for ``question``: frames, facts and the conversation so far."""
        stored = self.frames.load(job.id)
        if stored is None:
            raise NotSampledYet(
                "the video's frames are not sampled yet (or the job is starting again); "
                "ask again once the analysis is past 50%"
            )
        sampled = stored.sampled
        events = job.result.timeline if job.HasField("result") else sampled.timeline
        limits = self.model.limits()
        shown = prompting.frames_for_model(
            sampled.frames, stored.files, limit=limits.max_images, images=limits.accepts_images
        )
        facts = prompting.context(
            job.video, sampled.frames, events, shown=shown, summary=job.result.summary
        )
        instructions = prompting.CHAT_PROMPT if shown.files else prompting.TEXT_ONLY_CHAT_PROMPT
        opening = f"{instructions}\n\n{facts}\n\nQuestion: "
        turns = await self.store.chat_turns(job.id, last=self.settings.chat_history_turns)
        history = [(t.question, t.answer) for t in turns]
        if history:
            history[0] = (opening + history[0][0], history[0][1])
            prompt = question
        else:
            prompt = opening + question
        return GenerateRequest(
            request_id=f"{job.id}-chat-{uuid.uuid4().hex[:12]}",
            prompt=prompt,
            images=shown.files,
            labels=shown.labels,
            max_tokens=max_tokens,
            history=history,
            priority=Priority.CHAT,
            # Questions about one job take turns with those about the others.
            fair_key=job.id,
        )

    async def answer(
        self, job: pb.Job, question: str, request: GenerateRequest
    ) -> AsyncIterator[pb.ChatResponse]:
        """The answer's pieces as they come, then the whole of it (kept in the conversation)."""
        parts: list[str] = []
        tokens = 0
        # The caller going away (cancelled) or the engine failing aborts the generation.
        async with contextlib.aclosing(self.model.generate(request, kind="chat")) as stream:
            async for delta in stream:
                tokens += delta.tokens
                if delta.text:
                    parts.append(delta.text)
                    yield pb.ChatResponse(delta=delta.text, completion_tokens=tokens)
        text = "".join(parts)
        cited = timeline.cited_times(text, duration_s=job.video.duration_s)
        await self.store.append_chat_turn(
            job.id,
            ChatTurn(
                question=question,
                answer=text,
                cited_times_s=tuple(cited),
                completion_tokens=tokens,
                created_at=time.time(),
            ),
        )
        yield pb.ChatResponse(done=True, text=text, cited_times_s=cited, completion_tokens=tokens)
