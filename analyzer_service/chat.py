"""Questions about an analysed video, answered by the model from its sampled frames and timeline.

A job can be asked about as soon as its frames are sampled (past 50%): the sampling stage leaves
the frames, their manifest and the timeline next to each other for this. The conversation of a
job is kept in the store; its last turns go into the next prompt as real chat turns, the frames
and the facts with the first. Answers stream as they are generated; a caller that goes away
aborts the generation.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import time
import uuid
from collections.abc import AsyncIterator

from analyzer_service import prompting, timeline
from analyzer_service.engine import Engine, EngineMonitor, GenerateRequest
from analyzer_service.pipeline import MANIFEST_FILE, SAMPLED_FILE, Pipeline
from analyzer_service.settings import AnalyzerSettings
from analyzer_service.store import ChatTurn, JobStore
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.core.errors import FailedPrecondition, InvalidInput

# Before this the frames are not all sampled (the pipeline's 50% event says they are).
SAMPLED_PERCENT = 50.0


class NotSampledYet(FailedPrecondition):
    code = "FRAMES_NOT_READY"


def _load_sampled(frames_dir: pathlib.Path) -> tuple[pb.AnalysisResult, list[pathlib.Path]]:
    manifest = json.loads((frames_dir / MANIFEST_FILE).read_text())
    sampled = pb.AnalysisResult.FromString((frames_dir / SAMPLED_FILE).read_bytes())
    files = [frames_dir / entry["file"] for entry in manifest]
    if len(files) != len(sampled.frames) or not all(path.exists() for path in files):
        raise FileNotFoundError(frames_dir)
    return sampled, files


class Chat:
    def __init__(
        self,
        *,
        settings: AnalyzerSettings,
        store: JobStore,
        engine: Engine,
        monitor: EngineMonitor | None,
        pipeline: Pipeline,
    ) -> None:
        self.settings = settings
        self.store = store
        self.engine = engine
        self.monitor = monitor
        # Its view of the model (images or not, how many) is the chat's too.
        self.pipeline = pipeline

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
        if job.state != pb.JOB_STATE_SUCCEEDED and job.percent < SAMPLED_PERCENT:
            raise NotSampledYet(
                "the video's frames are not sampled yet; ask again once the analysis is past 50%"
            )
        frames_dir = self.settings.jobs_dir / job.id / "frames"
        try:
            sampled, files = _load_sampled(frames_dir)
        except (OSError, ValueError, KeyError) as exc:
            raise NotSampledYet(
                "the video's frames are not available (the job may be starting again); "
                "ask again once the analysis is past 50%"
            ) from exc
        events = job.result.timeline if job.HasField("result") else sampled.timeline
        shown = prompting.frames_for_model(
            sampled.frames,
            files,
            limit=self.pipeline.max_images(),
            images=self.pipeline.accepts_images(),
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
        )

    async def answer(
        self, job: pb.Job, question: str, request: GenerateRequest
    ) -> AsyncIterator[pb.ChatResponse]:
        """The answer's pieces as they come, then the whole of it (kept in the conversation)."""
        parts: list[str] = []
        tokens = 0
        try:
            async with contextlib.AsyncExitStack() as stack:
                if self.monitor is not None:
                    await stack.enter_async_context(self.monitor.watch())
                stream = await stack.enter_async_context(
                    contextlib.aclosing(
                        self.pipeline.metrics.deltas(self.engine, request, kind="chat")
                    )
                )
                async for delta in stream:
                    tokens += delta.tokens
                    if delta.text:
                        parts.append(delta.text)
                        yield pb.ChatResponse(delta=delta.text, completion_tokens=tokens)
        except BaseException:
            # The caller went away (cancelled) or the engine failed: stop generating for it.
            with contextlib.suppress(Exception):
                await self.engine.abort(request.request_id)
            raise
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
