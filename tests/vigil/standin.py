"""Small real gRPC servers speaking Vigil's contracts, for what the real services cannot show,
and a scripted language model to plug into the real analyzer.

The services cannot tell which metadata arrived, never answer UNAVAILABLE or slowly on purpose,
and the real model's chat answers are random. These servers record the metadata they receive,
fail or stall on request, and stream a known chat answer (for the SDK's transport tests; chat
itself is tested against the real analyzer and engine). ``ScriptedEngine`` makes real jobs fail or
hold mid-inference on demand.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from analyzer_service.engine import Delta, EngineLimits, GenerateRequest, Lifecycle
from vigil.analyzer.v1 import analyzer_service_pb2 as apb
from vigil.analyzer.v1 import analyzer_service_pb2_grpc as apb_grpc
from vigil.core.errors import Unavailable, VigilError, abort_with
from vigil.detector.v1 import detector_service_pb2 as dpb
from vigil.detector.v1 import detector_service_pb2_grpc as dpb_grpc

Context = grpc.aio.ServicerContext[Any, Any]


@dataclass
class Record:
    """What the stand-ins saw: metadata per method, attempts, deadlines left on arrival."""

    metadata: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    time_remaining: list[float | None] = field(default_factory=list)

    def saw(self, method: str, context: Context) -> None:
        pairs = context.invocation_metadata() or ()
        self.metadata.setdefault(method, []).append({k: str(v) for k, v in pairs})
        self.calls[method] = self.calls.get(method, 0) + 1


class Detector(dpb_grpc.DetectorServiceServicer):
    # The rest of the contract answers UNIMPLEMENTED, as the generated base class does.
    AddSource = dpb_grpc.DetectorServiceServicer.AddSource
    Detect = dpb_grpc.DetectorServiceServicer.Detect
    ListIncidents = dpb_grpc.DetectorServiceServicer.ListIncidents
    RemoveSource = dpb_grpc.DetectorServiceServicer.RemoveSource
    Subscribe = dpb_grpc.DetectorServiceServicer.Subscribe
    UpdateSource = dpb_grpc.DetectorServiceServicer.UpdateSource
    ListEvents = dpb_grpc.DetectorServiceServicer.ListEvents
    GetCoverage = dpb_grpc.DetectorServiceServicer.GetCoverage
    ExportRecording = dpb_grpc.DetectorServiceServicer.ExportRecording
    GetSnapshot = dpb_grpc.DetectorServiceServicer.GetSnapshot
    ListDetections = dpb_grpc.DetectorServiceServicer.ListDetections
    ExportIncident = dpb_grpc.DetectorServiceServicer.ExportIncident
    ReviewIncident = dpb_grpc.DetectorServiceServicer.ReviewIncident
    GetIncidentStats = dpb_grpc.DetectorServiceServicer.GetIncidentStats

    def __init__(self, record: Record, *, fail_first: int = 0, delay_s: float = 0.0) -> None:
        self.record = record
        self.fail_first = fail_first
        self.delay_s = delay_s

    async def ListSources(
        self, request: dpb.ListSourcesRequest, context: Context
    ) -> dpb.ListSourcesResponse:
        self.record.saw("ListSources", context)
        if self.fail_first > 0:
            self.fail_first -= 1
            await abort_with(context, Unavailable("warming up"))
        spec = dpb.SourceSpec(id="standin", kind=dpb.SOURCE_KIND_TEST_PATTERN)
        return dpb.ListSourcesResponse(sources=[dpb.Source(spec=spec)])

    async def GetSource(
        self, request: dpb.GetSourceRequest, context: Context
    ) -> dpb.GetSourceResponse:
        self.record.saw("GetSource", context)
        self.record.time_remaining.append(context.time_remaining())
        await asyncio.sleep(self.delay_s)
        return dpb.GetSourceResponse(source=dpb.Source(spec=dpb.SourceSpec(id=request.source_id)))

    async def StreamIncidents(
        self, request: dpb.StreamIncidentsRequest, context: Context
    ) -> AsyncIterator[dpb.StreamIncidentsResponse]:
        self.record.saw("StreamIncidents", context)
        incident = dpb.Incident(id="i1", source_id="standin", class_name="knife")
        yield dpb.StreamIncidentsResponse(type=dpb.INCIDENT_EVENT_TYPE_OPENED, incident=incident)


class Analyzer(apb_grpc.AnalyzerServiceServicer):
    ANSWER = ("A white ", "square crosses ", "at [00:01].")
    CancelJob = apb_grpc.AnalyzerServiceServicer.CancelJob
    ListJobs = apb_grpc.AnalyzerServiceServicer.ListJobs
    StartAnalysis = apb_grpc.AnalyzerServiceServicer.StartAnalysis
    StreamAnalysisEvents = apb_grpc.AnalyzerServiceServicer.StreamAnalysisEvents
    UploadVideo = apb_grpc.AnalyzerServiceServicer.UploadVideo
    VerifyIncident = apb_grpc.AnalyzerServiceServicer.VerifyIncident
    CheckWatchRule = apb_grpc.AnalyzerServiceServicer.CheckWatchRule

    def __init__(self, record: Record) -> None:
        self.record = record

    async def GetJob(self, request: apb.GetJobRequest, context: Context) -> apb.GetJobResponse:
        self.record.saw("GetJob", context)
        return apb.GetJobResponse(job=apb.Job(id=request.job_id, state=apb.JOB_STATE_SUCCEEDED))

    async def Chat(
        self, request: apb.ChatRequest, context: Context
    ) -> AsyncIterator[apb.ChatResponse]:
        self.record.saw("Chat", context)
        for index, delta in enumerate(self.ANSWER):
            yield apb.ChatResponse(delta=delta, completion_tokens=index + 1)
        yield apb.ChatResponse(
            done=True,
            text="".join(self.ANSWER),
            cited_times_s=[1.0],
            completion_tokens=len(self.ANSWER),
        )


@dataclass
class Certificate:
    key_pem: bytes
    cert_pem: bytes


def self_signed() -> Certificate:
    """A certificate for 127.0.0.1 and localhost, its own root."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vigil-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return Certificate(key_pem, cert.public_bytes(serialization.Encoding.PEM))


async def serve(
    *,
    detector: Detector | None = None,
    analyzer: Analyzer | None = None,
    tls: Certificate | None = None,
    port: int = 0,
) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    if detector is not None:
        dpb_grpc.add_DetectorServiceServicer_to_server(detector, server)
    if analyzer is not None:
        apb_grpc.add_AnalyzerServiceServicer_to_server(analyzer, server)
    address = f"127.0.0.1:{port}"
    if tls is None:
        bound = server.add_insecure_port(address)
    else:
        credentials = grpc.ssl_server_credentials([(tls.key_pem, tls.cert_pem)])
        bound = server.add_secure_port(address, credentials)
    await server.start()
    return server, bound


class ScriptedEngine(Lifecycle):
    """A language model stand-in: answers with fixed text, fails with ``error``, or with
    ``block`` never finishes (a job held mid-inference).

    With ``gate``, every generation yields its first word and then waits while the gate is
    clear: a job held at inference that a test releases (``gate.set()``), or a chat answer held
    mid-stream (clear it again before asking) that a caller can walk away from. ``requests`` are
    the requests as they came; ``closed_early`` the ids whose generation was closed before its
    last word (the caller went away, the job was cancelled), ``aborted`` those the service
    aborted.
    """

    model = "scripted/model"
    limits = EngineLimits()

    def __init__(
        self,
        text: str = "A square moves right at [00:01].",
        *,
        block: bool = False,
        error: VigilError | None = None,
        gate: asyncio.Event | None = None,
    ) -> None:
        self.text = text
        self.block = block
        self.error = error
        self.gate = gate
        self.aborted: list[str] = []
        self.requests: list[GenerateRequest] = []
        self.closed_early: list[str] = []

    @property
    def words(self) -> list[str]:
        """The deltas every answer streams, in order."""
        return [word + " " for word in self.text.split(" ")]

    async def deltas(self, request: GenerateRequest) -> AsyncGenerator[Delta, None]:
        self.requests.append(request)
        if self.block:
            await asyncio.Event().wait()
        if self.error is not None:
            raise self.error
        finished = False
        try:
            for index, word in enumerate(self.words):
                if index == 1 and self.gate is not None:
                    await self.gate.wait()
                yield Delta(word, 1)
            finished = True
        finally:
            if not finished:
                self.closed_early.append(request.request_id)

    async def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)

    async def health(self) -> bool:
        return True


def failing_engine() -> ScriptedEngine:
    return ScriptedEngine(error=VigilError("the model ran out of memory", code="MODEL_FAILED"))
