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
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import httpx
import pytest
import websockets
from websockets.asyncio.client import connect

from tests.detector_service import blackhole
from tests.detector_service.backends.fake_roboflow import MODEL_ID, FakeRoboflow, serve
from tests.faults.inputs import HTML, jpeg, mp4, upload_messages
from vigil.analyzer.v1 import analyzer_service_pb2 as apb
from vigil.analyzer.v1 import analyzer_service_pb2_grpc as apb_grpc
from vigil.detector.v1 import detector_service_pb2 as dpb
from vigil.detector.v1 import detector_service_pb2_grpc as dpb_grpc
from vigil.launcher import free_port

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


def services_env(tmp_path: pathlib.Path, backend: dict[str, str]) -> dict[str, str]:
    """The environment of a ``vigil run`` on free ports, logging at DEBUG, with ``TOKEN``."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("VIGIL_", "ROBOFLOW_"))},
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "clients")]),
        "PYTHONUNBUFFERED": "1",
        "VIGIL_TOKEN": TOKEN,
        "VIGIL_DETECTOR_PORT": str(free_port()),
        "VIGIL_ANALYZER_PORT": str(free_port()),
        "VIGIL_BRIDGE_PORT": str(free_port()),
        # Free ports for the metrics `vigil run` serves (9101-9103 unless told).
        "VIGIL_DETECTOR_METRICS_PORT": str(free_port()),
        "VIGIL_ANALYZER_METRICS_PORT": str(free_port()),
        "VIGIL_RUN_METRICS_PORT": str(free_port()),
        **backend,
        "VIGIL_DETECTOR_DATA_DIR": str(tmp_path / "detector"),
        "VIGIL_ANALYZER_DATA_DIR": str(tmp_path / "analyzer"),
        "VIGIL_ANALYZER_MEDIA_WORKERS": "1",
        "VIGIL_ANALYZER_DEFAULT_SAMPLING_POLICY": "seed",
    }
    for prefix in ("DETECTOR", "ANALYZER", "BRIDGE"):
        env[f"VIGIL_{prefix}_LOG_LEVEL"] = "DEBUG"
    return env


@contextlib.asynccontextmanager
async def running(env: dict[str, str], log_path: pathlib.Path) -> AsyncIterator[None]:
    """``vigil run`` with every byte of its and its services' stdout and stderr in ``log_path``
    (the services inherit the launcher's descriptors: C libraries' output lands there too)."""
    with log_path.open("wb") as log:
        launcher = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "vigil.cli", "run"],
            env=env,
            cwd=log_path.parent,  # no ./.env of the developer's
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            await wait_http(f"http://127.0.0.1:{env['VIGIL_BRIDGE_PORT']}/health", 60)
            for name in ("DETECTOR", "ANALYZER"):
                await wait_grpc(int(env[f"VIGIL_{name}_PORT"]), 60)
            yield
        except BaseException:
            tail = (await asyncio.to_thread(log_path.read_text, errors="replace"))[-6000:]
            print(f"--- the services' log, last lines ---\n{tail}")
            raise
        finally:
            launcher.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(launcher.wait(), 30)
            except TimeoutError:
                launcher.kill()
                await launcher.wait()


async def test_no_secret_in_any_log_or_response(
    tmp_path: pathlib.Path, failing_roboflow: FakeRoboflow
) -> None:
    backend = {
        "VIGIL_DETECTOR_BACKEND": "roboflow",
        "VIGIL_DETECTOR_ROBOFLOW_API_KEY": KEY,
        "VIGIL_DETECTOR_ROBOFLOW_API_URL": failing_roboflow.url,
        "VIGIL_DETECTOR_ROBOFLOW_MODEL_ID": MODEL_ID,
        "VIGIL_DETECTOR_ROBOFLOW_TIMEOUT_S": "2",
    }
    env = services_env(tmp_path, backend)
    ports = {
        name: int(env[f"VIGIL_{name.upper()}_PORT"]) for name in ("detector", "analyzer", "bridge")
    }
    log_path = tmp_path / "vigil-run.log"
    video = mp4(tmp_path / "clip.mp4")
    seen = Seen()
    async with running(env, log_path):
        await force_errors(seen, ports, video)
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


# --- camera credentials ----------------------------------------------------------------------

CAM_PASSWORD = f"canary-campw-{uuid.uuid4().hex}"
CAM_QUERY = {name: f"canary-cam{name}-{uuid.uuid4().hex}" for name in ("token", "password", "key")}
CAMERA_CANARIES = [CAM_PASSWORD, *CAM_QUERY.values()]


@pytest.fixture
def garbage_camera() -> Iterator[int]:
    with blackhole.garbage_server() as port:
        yield port


def camera_uris(garbage: int, refused: int) -> dict[str, str]:
    query = "&".join(f"{name}={value}" for name, value in CAM_QUERY.items())
    return {
        "cam-file": f"rtsp://admin:{CAM_PASSWORD}@127.0.0.1:{garbage}/live",  # the sources file
        "cam-grpc": f"rtsp://user:{CAM_PASSWORD}@127.0.0.1:{refused}/s?{query}",
        "cam-query": f"http://127.0.0.1:{garbage}/video.mjpg?user=me&{query}",
        "cam-bridge": f"http://viewer:{CAM_PASSWORD}@127.0.0.1:{refused}/mjpeg?{query}",
    }


async def until_failed_open(stub: Any, source_id: str, metadata: Any) -> dpb.Source:
    """Subscribe, so the capture really opens the URI, until its failure is reported."""
    call = stub.Subscribe(
        dpb.SubscribeRequest(source_id=source_id, omit_jpeg=True), metadata=metadata
    )
    try:
        async with asyncio.timeout(60):
            async for message in call:
                if message.HasField("source") and message.source.last_error:
                    source: dpb.Source = message.source
                    return source
    finally:
        call.cancel()
    raise AssertionError(f"{source_id}: the subscription ended before the open failed")


async def use_cameras(seen: Seen, env: dict[str, str], uris: dict[str, str]) -> None:
    metadata = (("authorization", f"Bearer {TOKEN}"),)
    right = {"authorization": f"Bearer {TOKEN}"}
    bridge = f"http://127.0.0.1:{env['VIGIL_BRIDGE_PORT']}"
    async with httpx.AsyncClient(base_url=bridge, timeout=20) as http:
        spec = {"id": "cam-bridge", "kind": "stream", "uri": uris["cam-bridge"]}
        added = seen.http(await http.post("/api/sources", json=spec, headers=right))
        assert added.status_code == 201, added.text
        bad = {**spec, "max_fps": -1}  # refused: the error must not echo the body
        assert (
            seen.http(await http.post("/api/sources", json=bad, headers=right)).status_code == 400
        )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{env['VIGIL_DETECTOR_PORT']}") as channel:
        stub = dpb_grpc.DetectorServiceStub(channel)
        for source_id in ("cam-grpc", "cam-query"):
            pb_spec = dpb.SourceSpec(id=source_id, kind=dpb.SOURCE_KIND_STREAM, uri=uris[source_id])
            request = dpb.AddSourceRequest(source=pb_spec)
            seen.add(await stub.AddSource(request, metadata=metadata))
        taken = dpb.SourceSpec(id="cam-grpc", kind=dpb.SOURCE_KIND_STREAM, uri=uris["cam-grpc"])
        seen.grpc(
            await grpc_error(stub.AddSource(dpb.AddSourceRequest(source=taken), metadata=metadata))
        )
        for source_id in uris:
            seen.add(await until_failed_open(stub, source_id, metadata))
            got = await stub.GetSource(dpb.GetSourceRequest(source_id=source_id), metadata=metadata)
            seen.add(got)
        seen.add(await stub.ListSources(dpb.ListSourcesRequest(), metadata=metadata))
    async with httpx.AsyncClient(timeout=20) as http:
        listed = seen.http(await http.get(f"{bridge}/api/sources", headers=right))
        assert {s["spec"]["id"] for s in listed.json()["sources"]} >= set(uris), listed.text
        seen.http(await http.get(f"{bridge}/metrics", headers=right))
        for name in ("DETECTOR", "ANALYZER", "RUN"):
            seen.http(
                await http.get(f"http://127.0.0.1:{env[f'VIGIL_{name}_METRICS_PORT']}/metrics")
            )
    for args in (["sources", "ls"], ["sources", "ls", "--json"]):
        cli = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "vigil.cli", *args],
            env={**env, "VIGIL_DETECTOR_ADDRESS": f"127.0.0.1:{env['VIGIL_DETECTOR_PORT']}"},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(cli.communicate(), 60)
        assert cli.returncode == 0, err
        seen.add(out.decode(errors="replace") + err.decode(errors="replace"))


async def test_no_camera_credential_in_any_log_output_or_response(
    tmp_path: pathlib.Path, garbage_camera: int
) -> None:
    """Cameras whose URIs carry a password and tokens, each opened and failing: the secrets are in
    no reply (gRPC, REST, CLI, metrics) and in no byte any process wrote to stdout or stderr, the
    C libraries' own output included (the services inherit the launcher's descriptors)."""
    uris = camera_uris(garbage_camera, free_port())
    sources = tmp_path / "sources.toml"
    sources.write_text(
        f'[[sources]]\nid = "cam-file"\nkind = "stream"\nuri = "{uris["cam-file"]}"\n'
    )
    sources.chmod(0o600)
    env = services_env(tmp_path, backend={"VIGIL_DETECTOR_BACKEND": "none"})
    env["VIGIL_DETECTOR_SOURCES_FILE"] = str(sources)
    # Let the C libraries talk as much as an operator could make them.
    env["OPENCV_LOG_LEVEL"] = "DEBUG"
    env["OPENCV_FFMPEG_LOGLEVEL"] = "56"
    env["OPENCV_VIDEOIO_DEBUG"] = "1"
    log_path = tmp_path / "vigil-run.log"
    seen = Seen()
    async with running(env, log_path):
        await use_cameras(seen, env, uris)
    logs = log_path.read_text(errors="replace")
    responses = "\n".join(seen.texts)
    # Not a vacuous pass: every source was added, opened, failed, and shows its masked form.
    for masked in (
        "admin:***@",
        "user:***@",
        "viewer:***@",
        "token=***",
        "password=***",
        "key=***",
    ):
        assert masked in responses, masked
    assert "cam-query" in logs  # its failure was logged
    for secret in CAMERA_CANARIES:
        assert logs.count(secret) == 0, [line for line in logs.splitlines() if secret in line][:5]
        assert responses.count(secret) == 0, [t for t in seen.texts if secret in t][:5]
