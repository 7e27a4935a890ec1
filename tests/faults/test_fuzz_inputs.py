"""Hypothesis against the two places where untrusted bytes meet the services: the ``/ws/session``
message handler and the upload probe. Whatever arrives, the answer is a well-formed event or a
clean refusal, and the service goes on serving.

Bounded: a fixed number of examples each, derandomized so a failure reproduces.
"""

from __future__ import annotations

import json
import math
import pathlib
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import ClientConnection, connect

from tests.faults.inputs import Stack, mjpeg_avi, mp4, stack_in_thread, upload_messages
from vigil.analyzer.v1 import analyzer_service_pb2_grpc as apb_grpc

pytestmark = pytest.mark.timeout(120)

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)

SERVER_EVENTS = {
    "pong",
    "error",
    "session_joined",
    "session_left",
    "analysis_progress",
    "long_video_detected",
    "ai_thinking",
    "analysis_complete",
    "chat_response",
}
CLIENT_EVENTS = ["join_session", "leave_session", "ping", "chat", "dance", "", "__proto__"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("fuzz")
    bridge = {"ws_message_rate": 10_000.0, "ws_message_burst": 10_000}
    with stack_in_thread(root / "data", bridge=bridge) as (running, _loop):
        yield running


@pytest.fixture(scope="module")
def session(stack: Stack) -> Iterator[list[ClientConnection]]:
    """One /ws/session connection for all examples (in a list, so a test can replace it)."""
    with connect(f"{stack.bridge.ws}/ws/session", max_size=None) as ws:
        yield [ws]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=20,
)
data_values = json_values | st.fixed_dictionaries(
    {},
    optional={
        "job_id": st.text(max_size=40) | json_values,
        "session_id": st.text(max_size=200) | json_values,
        "after_sequence": st.integers() | json_values,
        "question": st.text(max_size=300) | json_values,
        "max_tokens": st.integers() | json_values,
    },
)
envelopes = st.builds(
    lambda event, data: json.dumps({"event": event, "data": data}),
    st.sampled_from(CLIENT_EVENTS) | st.text(max_size=30),
    data_values,
)
messages = (
    envelopes
    | st.text(max_size=300)
    | st.binary(max_size=300)
    | json_values.map(json.dumps)
    | st.integers(1, 5000).map(lambda depth: "[" * depth + "]" * depth)
)


def check_event(raw: str | bytes) -> dict[str, Any]:
    assert isinstance(raw, str), "the server sends text only"
    message = orjson.loads(raw)
    assert set(message) == {"event", "data"}, message
    assert message["event"] in SERVER_EVENTS, message
    assert isinstance(message["data"], dict)
    if message["event"] == "error":
        assert isinstance(message["data"]["code"], str)
        assert isinstance(message["data"]["message"], str)
        assert message["data"]["code"]
        assert message["data"]["message"]
        assert message["data"]["code"] != "INTERNAL", message
    event: dict[str, Any] = message
    return event


@FUZZ
@given(message=messages)
def test_any_session_message_gets_well_formed_answers(
    session: list[ClientConnection], message: str | bytes
) -> None:
    ws = session[0]
    ws.send(message)
    # A ping with a fresh nonce marks the end of what the message caused.
    nonce = uuid.uuid4().hex
    ws.send(orjson.dumps({"event": "ping", "data": {"nonce": nonce}}).decode())
    while True:
        event = check_event(ws.recv(timeout=10))
        if event["event"] == "pong" and event["data"].get("nonce") == nonce:
            break


mp4_seed: list[bytes] = []
avi_seed: list[bytes] = []


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> None:
    tmp = tmp_path_factory.mktemp("seeds")
    mp4_seed.append(mp4(tmp / "seed.mp4", seconds=1.0, size=(64, 48)))
    avi_seed.append(mjpeg_avi(tmp / "seed.avi", count=10))


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    base = bytearray(draw(st.sampled_from([mp4_seed, avi_seed]))[0])
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["flip", "cut", "splice", "field"]))
        at = draw(st.integers(0, len(base) - 1))
        if kind == "flip":
            base[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del base[at : at + draw(st.integers(1, 512))]
        elif kind == "splice":
            base[at:at] = draw(st.binary(min_size=1, max_size=64))
        else:  # a 32-bit field set to an extreme
            value = draw(st.sampled_from([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 0x80000000]))
            base[at : at + 4] = value.to_bytes(4, draw(st.sampled_from(["little", "big"])))
        if not base:
            base = bytearray(b"\x00")
    return bytes(base)


CLEAN_REFUSALS = (
    "INVALID_ARGUMENT: not a usable video: ",
    "INVALID_ARGUMENT: video refused: ",
)


@pytest.mark.usefixtures("seeds")
@settings(FUZZ, max_examples=80)
@given(data=mutated() | st.binary(min_size=1, max_size=2048))
def test_any_upload_is_probed_or_refused_cleanly(stack: Stack, data: bytes) -> None:
    analyzer = stack.analyzer
    with grpc.insecure_channel(f"127.0.0.1:{analyzer.port}") as channel:
        stub = apb_grpc.AnalyzerServiceStub(channel)
        refused: grpc.RpcError | None = None
        try:
            video = stub.UploadVideo(upload_messages(data, name="fuzz.mp4"), timeout=30).video
        except grpc.RpcError as error:
            refused = error
    if refused is not None:
        details = refused.details() or ""
        assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT, details
        assert details.startswith(CLEAN_REFUSALS), details
        return
    limits = analyzer.settings
    assert math.isfinite(video.fps)
    assert 0 < video.fps <= limits.max_fps
    assert math.isfinite(video.duration_s)
    assert 0 < video.duration_s <= limits.max_duration_s
    assert video.width > 0
    assert video.height > 0
    assert video.frame_count > 0
    (pathlib.Path(limits.videos_dir) / video.id).unlink()


def test_the_services_are_still_serving_after_the_fuzzing(stack: Stack) -> None:
    with connect(f"{stack.bridge.ws}/ws/session") as ws:
        ws.send('{"event": "ping"}')
        assert check_event(ws.recv(timeout=5))["event"] == "pong"
    parts = [p for p in stack.videos_dir.iterdir() if p.name.endswith(".part")]
    assert parts == []
