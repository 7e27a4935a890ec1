"""Clients of the analyzer service: ``AnalyzerClient`` (blocking) and ``AsyncAnalyzerClient``.

Unary calls carry the default deadline and are retried on UNAVAILABLE by gRPC; uploads and
streams have no deadline unless one is given (videos are large, analyses are long). A stream of
job events that breaks can be resumed without duplicates with ``after_sequence``.

Requests are built and responses converted by the functions below, which both flavours share.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterable, Iterator, Sequence
from typing import TYPE_CHECKING

from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.analyzer.v1 import analyzer_service_pb2_grpc as pb_grpc
from vigil.core import upload_protocol
from vigil.core.errors import InvalidInput
from vigil.sdk import uploads
from vigil.sdk.analyzer_types import (
    JOB_STATES,
    AnalysisEvent,
    AnalysisOptions,
    ChatChunk,
    Job,
    RecordingRange,
    UploadResult,
)
from vigil.sdk.client import AsyncClient, Client, invoke
from vigil.sdk.common import Page
from vigil.sdk.errors import mapped_errors
from vigil.sdk.model_types import (
    Picture,
    RuleAnswer,
    Sampling,
    Verification,
    rule_request,
    verification_of,
    verify_request,
)
from vigil.sdk.options import ClientOptions
from vigil.sdk.streams import AsyncStream, Stream

if TYPE_CHECKING:
    from vigil.analyzer.v1.analyzer_service_pb2_grpc import AnalyzerServiceAsyncStub

SERVICE = pb.DESCRIPTOR.services_by_name["AnalyzerService"].full_name
UNARY_METHODS = (
    "StartAnalysis", "GetJob", "ListJobs", "CancelJob", "VerifyIncident", "CheckWatchRule",
)  # fmt: skip

JobResponse = pb.StartAnalysisResponse | pb.GetJobResponse | pb.CancelJobResponse


def list_jobs_request(page_size: int, page_token: str, state: str | None) -> pb.ListJobsRequest:
    if state is not None and state not in JOB_STATES:
        raise InvalidInput(f"unknown job state {state!r}; one of {', '.join(JOB_STATES)}")
    return pb.ListJobsRequest(
        page_size=page_size,
        page_token=page_token,
        state=JOB_STATES[state] if state else pb.JOB_STATE_UNSPECIFIED,
    )


def job_page(response: pb.ListJobsResponse) -> Page[Job]:
    return Page(tuple(Job.from_proto(m) for m in response.jobs), response.next_page_token)


def job_of(response: JobResponse) -> Job:
    return Job.from_proto(response.job)


def start_request(
    video_id: str, options: AnalysisOptions | None, recording: RecordingRange | None = None
) -> pb.StartAnalysisRequest:
    return pb.StartAnalysisRequest(
        video_id=video_id,
        options=(options or AnalysisOptions()).to_proto(),
        recording=None if recording is None else recording.to_proto(),
    )


# A recording's analysis answers once the analyzer has fetched the range from the detector
# service and stored it: longer than an ordinary call may take.
RECORDING_TIMEOUT_S = 600.0


def events_request(job_id: str, after_sequence: int) -> pb.StreamAnalysisEventsRequest:
    return pb.StreamAnalysisEventsRequest(job_id=job_id, after_sequence=after_sequence)


def chat_request(job_id: str, question: str, max_tokens: int) -> pb.ChatRequest:
    return pb.ChatRequest(job_id=job_id, question=question, max_tokens=max_tokens)


@contextlib.contextmanager
def open_upload(
    source: uploads.UploadInput,
    name: str | None,
    size: int | None,
    start_analysis: bool,
    options: AnalysisOptions | None,
) -> Iterator[tuple[uploads.OpenUpload, pb.UploadVideoRequest]]:
    """The file to send and the header that goes first; the file is closed when the block ends."""
    upload = uploads.open_upload(source, name, size)
    try:
        yield upload, uploads.header(upload, start_analysis, options)
    finally:
        upload.close()


class AnalyzerClient(Client):
    """Blocking client; gRPC channels are thread-safe, so threads may share one."""

    def __init__(self, target: str | ClientOptions) -> None:
        super().__init__(target, SERVICE, UNARY_METHODS)
        self.stub = pb_grpc.AnalyzerServiceStub(self._channel)

    def upload_video(
        self,
        source: uploads.UploadInput,
        *,
        name: str | None = None,
        size: int | None = None,
        start_analysis: bool = False,
        options: AnalysisOptions | None = None,
        progress: uploads.Progress | None = None,
        timeout_s: float | None = None,
    ) -> UploadResult:
        """Upload a file (a path, or a binary file object read from where it stands).

        ``progress`` is called from gRPC's sending thread. The service probes the video when the
        upload ends and refuses unreadable or oversized ones with InvalidInput.
        """
        with open_upload(source, name, size, start_analysis, options) as (upload, first):
            requests = uploads.requests(upload, first, progress)
            response = self._call(self.stub.UploadVideo, requests, timeout_s)
        return UploadResult.from_proto(response)

    def start_analysis(
        self,
        video_id: str = "",
        options: AnalysisOptions | None = None,
        *,
        recording: RecordingRange | None = None,
        timeout_s: float | None = None,
    ) -> Job:
        """Analyse an uploaded video, or (``recording``, no ``video_id``) a range of a camera's
        recording, which the service fetches from the detector service first."""
        request = start_request(video_id, options, recording)
        return self._unary(self.stub.StartAnalysis, request, timeout_s, job_of)

    def analyze_recording(
        self,
        source_id: str,
        start: float,
        end: float,
        options: AnalysisOptions | None = None,
        *,
        timeout_s: float | None = RECORDING_TIMEOUT_S,
    ) -> Job:
        """Analyse [start, end) (seconds since the epoch) of a camera's recording; answers with
        the job once the range is fetched and stored."""
        recording = RecordingRange(source_id, start, end)
        return self.start_analysis(options=options, recording=recording, timeout_s=timeout_s)

    def events(self, job_id: str, *, after_sequence: int = 0) -> Stream[AnalysisEvent]:
        """The job's events so far (after ``after_sequence``), then live ones until it ends."""
        request = events_request(job_id, after_sequence)
        return self._stream(self.stub.StreamAnalysisEvents, request, AnalysisEvent.from_proto)

    def chat(self, job_id: str, question: str, *, max_tokens: int = 0) -> Stream[ChatChunk]:
        """The answer as it is generated; cancelling the stream stops the generation."""
        request = chat_request(job_id, question, max_tokens)
        return self._stream(self.stub.Chat, request, ChatChunk.from_proto)

    def get_job(self, job_id: str, *, timeout_s: float | None = None) -> Job:
        request = pb.GetJobRequest(job_id=job_id)
        return self._unary(self.stub.GetJob, request, timeout_s, job_of)

    def list_jobs(
        self,
        *,
        page_size: int = 0,
        page_token: str = "",
        state: str | None = None,
        timeout_s: float | None = None,
    ) -> Page[Job]:
        """One page of jobs, newest first, without their results."""
        request = list_jobs_request(page_size, page_token, state)
        return self._unary(self.stub.ListJobs, request, timeout_s, job_page)

    def cancel_job(self, job_id: str, *, timeout_s: float | None = None) -> Job:
        request = pb.CancelJobRequest(job_id=job_id)
        return self._unary(self.stub.CancelJob, request, timeout_s, job_of)

    def verify_incident(
        self,
        *,
        incident_id: str,
        source_id: str,
        class_name: str,
        pictures: Sequence[Picture],
        sampling: Sampling | None = None,
        timeout_s: float | None = None,
    ) -> Verification:
        """The model's verdict on an incident's pictures (snapshot, frames, crops)."""
        request = verify_request(incident_id, source_id, class_name, pictures, sampling)
        return self._unary(self.stub.VerifyIncident, request, timeout_s, verification_of)

    def check_watch_rule(
        self,
        *,
        rule_id: str,
        source_id: str,
        condition: str,
        pictures: Sequence[Picture],
        sampling: Sampling | None = None,
        timeout_s: float | None = None,
    ) -> RuleAnswer:
        """Whether the pictures show the rule's situation, and why."""
        request = rule_request(rule_id, source_id, condition, pictures, sampling)
        return self._unary(self.stub.CheckWatchRule, request, timeout_s, RuleAnswer.from_proto)


class AsyncAnalyzerClient(AsyncClient):
    """The asyncio client; create and use it on one event loop."""

    name = "analyzer"

    def __init__(self, target: str | ClientOptions) -> None:
        super().__init__(target, SERVICE, UNARY_METHODS)
        self.stub: AnalyzerServiceAsyncStub = pb_grpc.AnalyzerServiceStub(self._channel)

    async def upload_video(
        self,
        source: uploads.UploadInput,
        *,
        name: str | None = None,
        size: int | None = None,
        start_analysis: bool = False,
        options: AnalysisOptions | None = None,
        progress: uploads.Progress | None = None,
        timeout_s: float | None = None,
        on_behalf_of: str | None = None,
    ) -> UploadResult:
        """Upload a file (a path, or a binary file object read from where it stands).

        ``on_behalf_of`` names the client the upload is for when this process is a proxy the
        analyzer trusts (``VIGIL_ANALYZER_TRUSTED_PROXIES``, as the bridge is): the upload
        counts against that client's share of the upload slots instead of this process's.
        """
        with open_upload(source, name, size, start_analysis, options) as (upload, _):
            return await self.upload_chunks(
                uploads.async_chunks(upload, progress),
                name=upload.name,
                size=upload.size,
                start_analysis=start_analysis,
                options=options,
                timeout_s=timeout_s,
                on_behalf_of=on_behalf_of,
            )

    async def upload_chunks(
        self,
        chunks: AsyncIterable[bytes],
        *,
        name: str,
        size: int = 0,
        start_analysis: bool = False,
        options: AnalysisOptions | None = None,
        timeout_s: float | None = None,
        on_behalf_of: str | None = None,
    ) -> UploadResult:
        """Upload a video whose bytes arrive as ``chunks`` (a proxy relaying a body as it comes
        in); ``size`` is the declared size, 0 when unknown until the end. The analyzer answers
        the header before any chunk is read from ``chunks``, so a refused upload reads none; an
        exception from ``chunks`` cancels the upload and propagates as it is."""
        first = uploads.upload_header(name, size, start_analysis, options)
        on_behalf = upload_protocol.client_metadata(on_behalf_of)
        call = invoke(self.options, self.stub.UploadVideo, None, timeout_s, on_behalf)
        with mapped_errors():
            response = await upload_protocol.send(call, first, chunks)
        return UploadResult.from_proto(response)

    async def start_analysis(
        self,
        video_id: str = "",
        options: AnalysisOptions | None = None,
        *,
        recording: RecordingRange | None = None,
        timeout_s: float | None = None,
    ) -> Job:
        request = start_request(video_id, options, recording)
        return await self._unary(self.stub.StartAnalysis, request, timeout_s, job_of)

    async def analyze_recording(
        self,
        source_id: str,
        start: float,
        end: float,
        options: AnalysisOptions | None = None,
        *,
        timeout_s: float | None = RECORDING_TIMEOUT_S,
    ) -> Job:
        recording = RecordingRange(source_id, start, end)
        return await self.start_analysis(options=options, recording=recording, timeout_s=timeout_s)

    def events(self, job_id: str, *, after_sequence: int = 0) -> AsyncStream[AnalysisEvent]:
        request = events_request(job_id, after_sequence)
        return self._stream(self.stub.StreamAnalysisEvents, request, AnalysisEvent.from_proto)

    def chat(self, job_id: str, question: str, *, max_tokens: int = 0) -> AsyncStream[ChatChunk]:
        request = chat_request(job_id, question, max_tokens)
        return self._stream(self.stub.Chat, request, ChatChunk.from_proto)

    async def get_job(self, job_id: str, *, timeout_s: float | None = None) -> Job:
        request = pb.GetJobRequest(job_id=job_id)
        return await self._unary(self.stub.GetJob, request, timeout_s, job_of)

    async def list_jobs(
        self,
        *,
        page_size: int = 0,
        page_token: str = "",
        state: str | None = None,
        timeout_s: float | None = None,
    ) -> Page[Job]:
        request = list_jobs_request(page_size, page_token, state)
        return await self._unary(self.stub.ListJobs, request, timeout_s, job_page)

    async def cancel_job(self, job_id: str, *, timeout_s: float | None = None) -> Job:
        request = pb.CancelJobRequest(job_id=job_id)
        return await self._unary(self.stub.CancelJob, request, timeout_s, job_of)

    async def verify_incident(
        self,
        *,
        incident_id: str,
        source_id: str,
        class_name: str,
        pictures: Sequence[Picture],
        sampling: Sampling | None = None,
        timeout_s: float | None = None,
    ) -> Verification:
        """The model's verdict on an incident's pictures (snapshot, frames, crops)."""
        request = verify_request(incident_id, source_id, class_name, pictures, sampling)
        return await self._unary(self.stub.VerifyIncident, request, timeout_s, verification_of)

    async def check_watch_rule(
        self,
        *,
        rule_id: str,
        source_id: str,
        condition: str,
        pictures: Sequence[Picture],
        sampling: Sampling | None = None,
        timeout_s: float | None = None,
    ) -> RuleAnswer:
        """Whether the pictures show the rule's situation, and why."""
        request = rule_request(rule_id, source_id, condition, pictures, sampling)
        return await self._unary(
            self.stub.CheckWatchRule, request, timeout_s, RuleAnswer.from_proto
        )
