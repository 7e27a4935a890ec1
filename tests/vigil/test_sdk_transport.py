"""What the SDK puts on the wire and how it rides out trouble: the bearer token, TLS, retries
on UNAVAILABLE, waiting for a service that is not up yet, deadlines, and error mapping."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2

from tests.vigil import standin
from tests.vigil.conftest import LoopThread, StartDetector, free_port
from vigil.core.errors import (
    DETAILS_KEY,
    ERRORS,
    FailedPrecondition,
    InvalidInput,
    ModelNotConfigured,
    NotFound,
    TooLarge,
    Unavailable,
    VigilError,
    rich_status,
)
from vigil.sdk import (
    AnalyzerClient,
    AsyncAnalyzerClient,
    AsyncDetectorClient,
    ClientOptions,
    DetectorClient,
    RetryPolicy,
    from_rpc_error,
)
from vigil.sdk.errors import DeadlineExceeded

BEARER = {"authorization": "Bearer s3cret"}


class StandIns:
    def __init__(self, loop_thread: LoopThread) -> None:
        self.loop_thread = loop_thread
        self.servers: list[grpc.aio.Server] = []
        self.record = standin.Record()

    def start(self, **kwargs: Any) -> str:
        server, port = self.loop_thread.run(standin.serve(**kwargs))
        self.servers.append(server)
        return f"127.0.0.1:{port}"


@pytest.fixture
def standins(loop_thread: LoopThread) -> Iterator[StandIns]:
    made = StandIns(loop_thread)
    yield made
    for server in made.servers:
        loop_thread.run(server.stop(0))


def sent(record: standin.Record, method: str) -> dict[str, str]:
    return record.metadata[method][-1]


def test_token_rides_on_every_call_of_the_blocking_clients(standins: StandIns) -> None:
    record = standins.record
    address = standins.start(detector=standin.Detector(record), analyzer=standin.Analyzer(record))
    with DetectorClient(ClientOptions(address, token="s3cret")) as detector:
        assert [s.id for s in detector.list_sources()] == ["standin"]
        assert [e.kind for e in detector.incidents()] == ["opened"]
    with AnalyzerClient(ClientOptions(address, token="s3cret")) as analyzer:
        assert analyzer.get_job("j1").state == "succeeded"
        chunks = list(analyzer.chat("j1", "What happens?"))
    for method in ("ListSources", "StreamIncidents", "GetJob", "Chat"):
        assert BEARER.items() <= sent(record, method).items(), method
        assert "vigil-sdk/" in sent(record, method)["user-agent"]
    assert [c.delta for c in chunks[:-1]] == list(standin.Analyzer.ANSWER)
    assert (chunks[-1].done, chunks[-1].text) == (True, "".join(standin.Analyzer.ANSWER))
    assert chunks[-1].cited_times_s == (1.0,)

    with DetectorClient(address) as anonymous:
        anonymous.list_sources()
    assert "authorization" not in sent(record, "ListSources")


async def test_token_rides_on_every_call_of_the_async_clients(standins: StandIns) -> None:
    record = standins.record
    address = standins.start(detector=standin.Detector(record), analyzer=standin.Analyzer(record))
    async with AsyncDetectorClient(ClientOptions(address, token="s3cret")) as detector:
        assert [s.id for s in await detector.list_sources()] == ["standin"]
        assert [e.incident.id async for e in detector.incidents()] == ["i1"]
    async with AsyncAnalyzerClient(ClientOptions(address, token="s3cret")) as analyzer:
        assert (await analyzer.get_job("j1")).id == "j1"
        text = "".join([c.delta async for c in analyzer.chat("j1", "What happens?")])
    assert text == "".join(standin.Analyzer.ANSWER)
    for method in ("ListSources", "StreamIncidents", "GetJob", "Chat"):
        assert BEARER.items() <= sent(record, method).items(), method


def test_tls_with_a_private_root(standins: StandIns) -> None:
    cert = standin.self_signed()
    address = standins.start(detector=standin.Detector(standins.record), tls=cert)
    trusted = ClientOptions(address, tls=True, root_certificates=cert.cert_pem, token="s3cret")
    with DetectorClient(trusted) as client:
        assert [s.id for s in client.list_sources()] == ["standin"]
    assert BEARER.items() <= sent(standins.record, "ListSources").items()
    # The system's roots do not know this certificate; plaintext does not speak TLS.
    for options in (
        ClientOptions(address, tls=True, timeout_s=2, retry=None),
        ClientOptions(address, timeout_s=2, retry=None),
    ):
        with DetectorClient(options) as client, pytest.raises(Unavailable):
            client.list_sources()


@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_unavailable_is_retried_by_the_service_config(
    standins: StandIns, flavour: str
) -> None:
    record = standins.record
    address = standins.start(detector=standin.Detector(record, fail_first=2))
    options = ClientOptions(address, retry=RetryPolicy(initial_backoff_s=0.01))
    if flavour == "sync":
        with DetectorClient(options) as client:
            sources = client.list_sources()
    else:
        async with AsyncDetectorClient(options) as aclient:
            sources = await aclient.list_sources()
    assert [s.id for s in sources] == ["standin"]
    assert record.calls["ListSources"] == 3


def test_without_retries_unavailable_surfaces_at_once(standins: StandIns) -> None:
    record = standins.record
    address = standins.start(detector=standin.Detector(record, fail_first=2))
    client = DetectorClient(ClientOptions(address, retry=None))
    with client, pytest.raises(Unavailable, match="warming up") as failed:
        client.list_sources()
    assert failed.value.retryable
    assert isinstance(failed.value.__cause__, grpc.RpcError)
    assert record.calls["ListSources"] == 1


def test_a_call_made_before_the_service_is_up_waits_for_it(
    start_detector: StartDetector,
) -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    with DetectorClient(ClientOptions(address, timeout_s=0.5, retry=None)) as impatient:
        started = time.monotonic()
        with pytest.raises(Unavailable):
            impatient.list_sources()
        assert time.monotonic() - started < 0.5
    client = DetectorClient(ClientOptions(address, wait_for_ready=True, timeout_s=10))
    with client, concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(client.list_sources)
        time.sleep(0.3)
        assert not pending.done()
        start_detector(port=port)
        assert [s.id for s in pending.result(10)] == ["default"]


async def test_an_async_call_made_before_the_service_is_up_waits_for_it(
    start_detector: StartDetector,
) -> None:
    import asyncio

    port = free_port()
    options = ClientOptions(f"127.0.0.1:{port}", wait_for_ready=True, timeout_s=10)
    async with AsyncDetectorClient(options) as client:
        pending = asyncio.ensure_future(client.list_sources())
        await asyncio.sleep(0.3)
        assert not pending.done()
        await asyncio.to_thread(start_detector, port=port)
        assert [s.id for s in await asyncio.wait_for(pending, 10)] == ["default"]


def test_unary_calls_carry_the_default_deadline(standins: StandIns) -> None:
    record = standins.record
    address = standins.start(detector=standin.Detector(record, delay_s=0.6))
    with DetectorClient(ClientOptions(address, timeout_s=0.2)) as client:
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded) as late:
            client.get_source("cam")
        assert 0.15 < time.monotonic() - started < 0.55
        assert late.value.code == "DEADLINE_EXCEEDED"
        # The service learns the deadline too (gRPC rounds it up a little on the wire), and
        # one call may ask for more time.
        assert record.time_remaining[-1] is not None
        assert 0 < record.time_remaining[-1] <= 0.25
        assert client.get_source("cam", timeout_s=5).id == "cam"
        assert 4 < (record.time_remaining[-1] or 0) <= 5.1


async def test_async_unary_calls_carry_the_default_deadline(standins: StandIns) -> None:
    address = standins.start(detector=standin.Detector(standins.record, delay_s=0.6))
    async with AsyncDetectorClient(ClientOptions(address, timeout_s=0.2)) as client:
        with pytest.raises(DeadlineExceeded):
            await client.get_source("cam")


def rpc_error(
    status: grpc.StatusCode, details: str, trailers: grpc.aio.Metadata | None = None
) -> grpc.RpcError:
    trailing = trailers or grpc.aio.Metadata()
    return grpc.aio.AioRpcError(status, grpc.aio.Metadata(), trailing, details, None)


@pytest.mark.parametrize(
    "sent",
    [
        ModelNotConfigured("No language model"),
        FailedPrecondition("busy"),
        NotFound("no job 'x'"),
        InvalidInput("bad size", field="max_frames"),
        VigilError("the uploaded video is no longer stored", code="VIDEO_MISSING"),
    ],
)
def test_rich_statuses_map_back_to_the_same_errors(sent: VigilError) -> None:
    status = rich_status(sent)
    trailers = grpc.aio.Metadata((DETAILS_KEY, status.SerializeToString()))
    error = from_rpc_error(rpc_error(sent.status, status.message, trailers))
    assert type(error) is type(sent)
    assert (error.code, error.message, error.field) == (sent.code, sent.message, sent.field)


def test_a_rich_status_of_another_domain_is_not_read_as_ours() -> None:
    status = rich_status(NotFound("no job 'x'"))
    status.details[0].Pack(error_details_pb2.ErrorInfo(reason="NOT_FOUND", domain="example.com"))
    trailers = grpc.aio.Metadata((DETAILS_KEY, status.SerializeToString()))
    error = from_rpc_error(rpc_error(grpc.StatusCode.NOT_FOUND, "theirs", trailers))
    assert (type(error), error.message) == (NotFound, "theirs")


@pytest.mark.parametrize(
    ("status", "details", "cls", "code", "message"),
    [
        # gRPC's own failures carry no rich status: the status decides.
        (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "Received message larger than max (9 vs. 4)",
            TooLarge,
            "TOO_LARGE",
            "Received message larger than max (9 vs. 4)",
        ),
        (
            grpc.StatusCode.UNAVAILABLE,
            "failed to connect to all addresses",
            Unavailable,
            "UNAVAILABLE",
            "failed to connect to all addresses",
        ),
        # A status with no code of its own is an internal error of the other side.
        (grpc.StatusCode.DATA_LOSS, "", VigilError, "INTERNAL", "DATA_LOSS"),
    ],
)
def test_grpc_statuses_map_back_to_domain_errors(
    status: grpc.StatusCode, details: str, cls: type[VigilError], code: str, message: str
) -> None:
    error = from_rpc_error(rpc_error(status, details))
    assert type(error) is cls
    assert (error.code, error.message) == (code, message)
    assert error.status == ERRORS[code].status
