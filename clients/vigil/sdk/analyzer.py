"""Clients of the analyzer service: ``AnalyzerClient`` (blocking) and ``AsyncAnalyzerClient``.

Unary calls carry the default deadline and are retried on UNAVAILABLE by gRPC; uploads and
streams have no deadline unless one is given (videos are large, analyses are long). A stream of
job events that breaks can be resumed without duplicates with ``after_sequence``.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

import grpc

from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.analyzer.v1 import analyzer_service_pb2_grpc as pb_grpc
from vigil.errors import InvalidInput
from vigil.sdk import uploads
from vigil.sdk.analyzer_types import (
    JOB_STATES,
    AnalysisEvent,
    AnalysisOptions,
    ChatChunk,
    Job,
    UploadResult,
)
from vigil.sdk.common import Page
from vigil.sdk.errors import from_rpc_error
from vigil.sdk.options import (
    ClientOptions,
    as_options,
    open_aio_channel,
    open_channel,
    wait_ready,
    wait_ready_async,
)
from vigil.sdk.streams import AsyncStream, Stream

if TYPE_CHECKING:
    from vigil.analyzer.v1.analyzer_service_pb2_grpc import AnalyzerServiceAsyncStub

SERVICE = pb.DESCRIPTOR.services_by_name["AnalyzerService"].full_name
UNARY_METHODS = ("StartAnalysis", "GetJob", "ListJobs", "CancelJob")

Req = TypeVar("Req")
Resp = TypeVar("Resp")


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


def start_request(video_id: str, options: AnalysisOptions | None) -> pb.StartAnalysisRequest:
    return pb.StartAnalysisRequest(
        video_id=video_id, options=(options or AnalysisOptions()).to_proto()
    )


class AnalyzerClient:
    """Blocking client; gRPC channels are thread-safe, so threads may share one."""

    def __init__(self, target: str | ClientOptions) -> None:
        self.options = as_options(target)
        self._channel = open_channel(self.options, SERVICE, UNARY_METHODS)
        self.stub = pb_grpc.AnalyzerServiceStub(self._channel)

    def _unary(
        self, method: grpc.UnaryUnaryMultiCallable[Req, Resp], request: Req, timeout_s: float | None
    ) -> Resp:
        try:
            return method(
                request,
                timeout=self.options.deadline(timeout_s),
                metadata=self.options.metadata,
                wait_for_ready=self.options.wait_for_ready,
            )
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc

    def wait_until_ready(self, timeout_s: float) -> None:
        wait_ready(self._channel, timeout_s, self.options.address)

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
        upload = uploads.open_upload(source, name, size)
        try:
            first = uploads.header(upload, start_analysis, options)
            response = self.stub.UploadVideo(
                uploads.requests(upload, first, progress),
                timeout=timeout_s,
                metadata=self.options.metadata,
                wait_for_ready=self.options.wait_for_ready,
            )
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
        finally:
            upload.close()
        return UploadResult.from_proto(response)

    def start_analysis(
        self,
        video_id: str,
        options: AnalysisOptions | None = None,
        *,
        timeout_s: float | None = None,
    ) -> Job:
        response = self._unary(self.stub.StartAnalysis, start_request(video_id, options), timeout_s)
        return Job.from_proto(response.job)

    def events(self, job_id: str, *, after_sequence: int = 0) -> Stream[AnalysisEvent]:
        """The job's events so far (after ``after_sequence``), then live ones until it ends."""
        request = pb.StreamAnalysisEventsRequest(job_id=job_id, after_sequence=after_sequence)
        call = self.stub.StreamAnalysisEvents(
            request, metadata=self.options.metadata, wait_for_ready=self.options.wait_for_ready
        )
        return Stream(call, AnalysisEvent.from_proto)

    def chat(self, job_id: str, question: str, *, max_tokens: int = 0) -> Stream[ChatChunk]:
        """The answer as it is generated; cancelling the stream stops the generation."""
        request = pb.ChatRequest(job_id=job_id, question=question, max_tokens=max_tokens)
        call = self.stub.Chat(
            request, metadata=self.options.metadata, wait_for_ready=self.options.wait_for_ready
        )
        return Stream(call, ChatChunk.from_proto)

    def get_job(self, job_id: str, *, timeout_s: float | None = None) -> Job:
        response = self._unary(self.stub.GetJob, pb.GetJobRequest(job_id=job_id), timeout_s)
        return Job.from_proto(response.job)

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
        return job_page(self._unary(self.stub.ListJobs, request, timeout_s))

    def cancel_job(self, job_id: str, *, timeout_s: float | None = None) -> Job:
        response = self._unary(self.stub.CancelJob, pb.CancelJobRequest(job_id=job_id), timeout_s)
        return Job.from_proto(response.job)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> AnalyzerClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncAnalyzerClient:
    """The asyncio client; create and use it on one event loop."""

    def __init__(self, target: str | ClientOptions) -> None:
        self.options = as_options(target)
        self._channel = open_aio_channel(self.options, SERVICE, UNARY_METHODS)
        self.stub: AnalyzerServiceAsyncStub = pb_grpc.AnalyzerServiceStub(self._channel)

    async def _unary(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[Req, Resp],
        request: Req,
        timeout_s: float | None,
    ) -> Resp:
        try:
            return await method(
                request,
                timeout=self.options.deadline(timeout_s),
                metadata=self.options.metadata,
                wait_for_ready=self.options.wait_for_ready,
            )
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc

    async def wait_until_ready(self, timeout_s: float) -> None:
        await wait_ready_async(self._channel, timeout_s, self.options.address)

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
    ) -> UploadResult:
        """Upload a file (a path, or a binary file object read from where it stands)."""
        upload = uploads.open_upload(source, name, size)
        try:
            first = uploads.header(upload, start_analysis, options)
            response = await self.stub.UploadVideo(
                uploads.async_requests(upload, first, progress),
                timeout=timeout_s,
                metadata=self.options.metadata,
                wait_for_ready=self.options.wait_for_ready,
            )
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
        finally:
            upload.close()
        return UploadResult.from_proto(response)

    async def start_analysis(
        self,
        video_id: str,
        options: AnalysisOptions | None = None,
        *,
        timeout_s: float | None = None,
    ) -> Job:
        request = start_request(video_id, options)
        return Job.from_proto((await self._unary(self.stub.StartAnalysis, request, timeout_s)).job)

    def events(self, job_id: str, *, after_sequence: int = 0) -> AsyncStream[AnalysisEvent]:
        request = pb.StreamAnalysisEventsRequest(job_id=job_id, after_sequence=after_sequence)
        call = self.stub.StreamAnalysisEvents(
            request, metadata=self.options.metadata, wait_for_ready=self.options.wait_for_ready
        )
        return AsyncStream(call, AnalysisEvent.from_proto)

    def chat(self, job_id: str, question: str, *, max_tokens: int = 0) -> AsyncStream[ChatChunk]:
        request = pb.ChatRequest(job_id=job_id, question=question, max_tokens=max_tokens)
        call = self.stub.Chat(
            request, metadata=self.options.metadata, wait_for_ready=self.options.wait_for_ready
        )
        return AsyncStream(call, ChatChunk.from_proto)

    async def get_job(self, job_id: str, *, timeout_s: float | None = None) -> Job:
        request = pb.GetJobRequest(job_id=job_id)
        return Job.from_proto((await self._unary(self.stub.GetJob, request, timeout_s)).job)

    async def list_jobs(
        self,
        *,
        page_size: int = 0,
        page_token: str = "",
        state: str | None = None,
        timeout_s: float | None = None,
    ) -> Page[Job]:
        request = list_jobs_request(page_size, page_token, state)
        return job_page(await self._unary(self.stub.ListJobs, request, timeout_s))

    async def cancel_job(self, job_id: str, *, timeout_s: float | None = None) -> Job:
        request = pb.CancelJobRequest(job_id=job_id)
        return Job.from_proto((await self._unary(self.stub.CancelJob, request, timeout_s)).job)

    async def close(self) -> None:
        await self._channel.close(None)

    async def __aenter__(self) -> AsyncAnalyzerClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
