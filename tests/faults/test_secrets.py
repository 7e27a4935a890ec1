"""Secrets stay secret when everything goes wrong: with a canary Roboflow key and a canary token
configured (one ``VIGIL_TOKEN`` for all three services, as ``vigil run`` takes it), a Roboflow
server that fails every call and echoes the key back, and errors forced on every path (wrong
tokens, bad requests, bad uploads, a failing model), neither canary appears in any log line of any
service (at DEBUG) nor in any response.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest
import websockets
from websockets.asyncio.client import connect

from tests.detector_service.backends.fake_roboflow import MODEL_ID, FakeRoboflow, serve
from tests.faults.inputs import HTML, free_port, jpeg, mp4, upload_messages
from vigil.analyzer.v1 import analyzer_service_pb2 as apb
from vigil.analyzer.v1 import analyzer_service_pb2_grpc as apb_grpc
from vigil.detector.v1 import detector_service_pb2 as dpb
from vigil.detector.v1 import detector_service_pb2_grpc as dpb_grpc

pytestmark = pytest.mark.timeout(120)

KEY = f"canary-rf-{uuid.uuid4().hex}"
TOKEN = f"canary-tok-{uuid.uuid4().hex}"
REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def failing_roboflow() -> Iterator[FakeRoboflow]:
    always = [500] * 100_000
    fake = FakeRoboflow(failures={"v0": always, "infer": always, "registry": always})
    with serve(fake) as running:
        yield running


class Seen:
    """Everything a client got back, as text."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def http(self, response: httpx.Response) -> httpx.Response:
        self.texts += [response.text, str(response.headers), str(response.url.path)]
        return response

    def grpc(self, error: grpc.aio.AioRpcError) -> grpc.aio.AioRpcError:
        self.texts += [str(error.details()), str(error.debug_error_string())]
        self.texts += [str(error.trailing_metadata()), str(error.initial_metadata())]
        return error

    def add(self, value: Any) -> None:
        self.texts.append(str(value))


async def wait_http(url: str, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    async with httpx.AsyncClient() as http:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(url, timeout=1)).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} did not answer within {within_s} s")
            await asyncio.sleep(0.2)


async def wait_grpc(port: int, within_s: float) -> None:
    """Until the service accepts connections (its health may be NOT_SERVING: the model fails)."""
    deadline = time.monotonic() + within_s
    while True:
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing listens on port {port} after {within_s} s")
        await asyncio.sleep(0.2)


async def grpc_error(call: Any) -> grpc.aio.AioRpcError:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error
    raise AssertionError("the call succeeded")


async def force_errors(seen: Seen, ports: dict[str, int], video: bytes) -> None:
    bridge = f"http://127.0.0.1:{ports['bridge']}"
    right = {"authorization": f"Bearer {TOKEN}"}
    wrong = {"authorization": "Bearer not-the-token"}
    async with httpx.AsyncClient(base_url=bridge, timeout=20) as http:
        assert seen.http(await http.get("/api/sources")).status_code == 401
        assert seen.http(await http.get("/api/sources", headers=wrong)).status_code == 401
        seen.http(await http.get("/api/sources", headers=right))
        seen.http(await http.get(f"/api/sources?token={TOKEN}"))  # in a URL: logged, redacted
        seen.http(await http.get("/api/analyses/nope", headers=right))
        seen.http(await http.get("/api/incidents", headers=right))
        seen.http(await http.post("/api/analyses/nope/chat", json={"question": "?"}, headers=right))
        seen.http(await http.post("/api/analyses", json={"video_id": 5}, headers=right))
        bad = await http.post("/api/videos", params={"name": "x.mp4"}, content=HTML, headers=right)
        assert seen.http(bad).status_code == 400
        ok = await http.post(
            "/api/videos", params={"name": "v.mp4", "analyze": "true"}, content=video, headers=right
        )
        assert seen.http(ok).status_code == 201, ok.text
        job_id = ok.json()["job"]["id"]
        seen.http(await http.get("/health"))
        seen.http(await http.get("/metrics", headers=right))
    # WebSockets: a wrong token, the right one in the URL (which uvicorn logs), a failing model's
    # frames, a session with bad messages.
    ws = f"ws://127.0.0.1:{ports['bridge']}"
    with pytest.raises(websockets.InvalidStatus) as refused:
        await connect(f"{ws}/ws/session?token=wrong")
    seen.add(refused.value.response.body)
    async with connect(f"{ws}/ws/video-stream?token={TOKEN}&extras=detections") as viewer:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                async for message in viewer:
                    seen.add(message)
    async with connect(f"{ws}/ws/session?token={TOKEN}") as session:
        for message in ["{bad", '{"event": "join_session", "data": {"job_id": "nope"}}']:
            await session.send(message)
        await session.send('{"event": "join_session", "data": {"job_id": "' + job_id + '"}}')
        await session.send('{"event": "chat", "data": {"question": "?"}}')
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                async for message in session:
                    seen.add(message)
    # gRPC straight to the services: no token, a wrong one, then errors with the right one.
    metadata = (("authorization", f"Bearer {TOKEN}"),)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{ports['detector']}") as channel:
        stub = dpb_grpc.DetectorServiceStub(channel)
        seen.grpc(await grpc_error(stub.ListSources(dpb.ListSourcesRequest(), timeout=5)))
        seen.grpc(
            await grpc_error(
                stub.GetSource(dpb.GetSourceRequest(source_id="nope"), metadata=metadata)
            )
        )

        async def frames() -> Any:
            for n, data in enumerate([jpeg(), b"garbage", jpeg(), jpeg()]):
                yield dpb.DetectRequest(source_id="s", sequence=n, jpeg=data)

        answers = [r async for r in stub.Detect(frames(), metadata=metadata, timeout=30)]
        codes = [a.error.code for a in answers]
        assert "DETECTION_FAILED" in codes, codes  # the failing model was really called
        seen.add(answers)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{ports['analyzer']}") as channel:
        astub = apb_grpc.AnalyzerServiceStub(channel)
        seen.grpc(await grpc_error(astub.ListJobs(apb.ListJobsRequest(), timeout=5)))
        seen.grpc(
            await grpc_error(
                astub.UploadVideo(upload_messages(HTML), metadata=metadata, timeout=10)
            )
        )
        async with asyncio.timeout(30):
            while True:
                job = (await astub.GetJob(apb.GetJobRequest(job_id=job_id), metadata=metadata)).job
                if job.state not in (apb.JOB_STATE_QUEUED, apb.JOB_STATE_RUNNING):
                    break
                await asyncio.sleep(0.1)
        seen.add(job)


async def test_no_secret_in_any_log_or_response(
    tmp_path: pathlib.Path, failing_roboflow: FakeRoboflow
) -> None:
    ports = {name: free_port() for name in ("detector", "analyzer", "bridge")}
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("VIGIL_", "ROBOFLOW_"))},
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "clients")]),
        "PYTHONUNBUFFERED": "1",
        "VIGIL_TOKEN": TOKEN,
        "VIGIL_DETECTOR_PORT": str(ports["detector"]),
        "VIGIL_ANALYZER_PORT": str(ports["analyzer"]),
        "VIGIL_BRIDGE_PORT": str(ports["bridge"]),
        # Free ports for the metrics `vigil run` serves (9101-9103 unless told).
        "VIGIL_DETECTOR_METRICS_PORT": str(free_port()),
        "VIGIL_ANALYZER_METRICS_PORT": str(free_port()),
        "VIGIL_RUN_METRICS_PORT": str(free_port()),
        "VIGIL_DETECTOR_BACKEND": "roboflow",
        "VIGIL_DETECTOR_ROBOFLOW_API_KEY": KEY,
        "VIGIL_DETECTOR_ROBOFLOW_API_URL": failing_roboflow.url,
        "VIGIL_DETECTOR_ROBOFLOW_MODEL_ID": MODEL_ID,
        "VIGIL_DETECTOR_ROBOFLOW_TIMEOUT_S": "2",
        "VIGIL_DETECTOR_DATA_DIR": str(tmp_path / "detector"),
        "VIGIL_ANALYZER_DATA_DIR": str(tmp_path / "analyzer"),
        "VIGIL_ANALYZER_MEDIA_WORKERS": "1",
        "VIGIL_ANALYZER_DEFAULT_SAMPLING_POLICY": "seed",
    }
    for prefix in ("DETECTOR", "ANALYZER", "BRIDGE"):
        env[f"VIGIL_{prefix}_LOG_LEVEL"] = "DEBUG"
    log_path = tmp_path / "vigil-run.log"
    video = mp4(tmp_path / "clip.mp4")
    seen = Seen()
    with log_path.open("wb") as log:
        launcher = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "vigil.cli", "run"],
            env=env,
            cwd=tmp_path,  # no ./.env of the developer's
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            await wait_http(f"http://127.0.0.1:{ports['bridge']}/health", 60)
            for name in ("detector", "analyzer"):
                await wait_grpc(ports[name], 60)
            await force_errors(seen, ports, video)
        except BaseException:
            tail = log_path.read_text(errors="replace")[-6000:]
            print(f"--- the services' log, last lines ---\n{tail}")
            raise
        finally:
            launcher.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(launcher.wait(), 30)
            except TimeoutError:
                launcher.kill()
                await launcher.wait()
    logs = log_path.read_text(errors="replace")
    # Not a vacuous pass: the key was in use, the failures were logged, at DEBUG.
    assert any(
        KEY in str(r.query) + r.body.decode(errors="replace") for r in failing_roboflow.requests
    )
    assert "detection failed" in logs
    assert " DEBUG " in logs
    responses = "\n".join(seen.texts)
    assert "UNAUTHENTICATED" in responses
    for secret in (KEY, TOKEN):
        assert logs.count(secret) == 0, [line for line in logs.splitlines() if secret in line][:5]
        assert responses.count(secret) == 0, [t for t in seen.texts if secret in t][:5]
