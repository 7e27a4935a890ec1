"""Hostile uploads, through gRPC and through the bridge's ``POST /api/videos``: every one gets a
clear refusal (or, for a lying header, the truth), nothing of it stays on disk, and the caller's
file name never becomes a path.

Already covered elsewhere: the display-name rules (tests/analyzer_service/test_uploads.py), the
bridge's own size and Content-Length checks (tests/bridge/test_api.py).
"""

from __future__ import annotations

import asyncio
import pathlib
import time
import unicodedata
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio

from tests.faults.inputs import (
    HTML,
    SERVER_MADE_NAME,
    Stack,
    grpc_upload,
    mjpeg_avi,
    mp4,
    patch_avi,
    patch_sof,
    refusal,
    running_stack,
    stored,
    upload_messages,
    wait_until_empty,
    zip_bytes,
)
from vigil.analyzer.v1 import analyzer_service_pb2 as apb
from vigil.analyzer.v1 import analyzer_service_pb2_grpc as apb_grpc

pytestmark = [pytest.mark.timeout(60), pytest.mark.asyncio(loop_scope="module")]

LIMIT = 2 * 1024 * 1024  # the analyzer's upload limit in these tests
MAX_DURATION_S = 60.0


@dataclass
class Env:
    stack: Stack
    stub: Any
    http: httpx.AsyncClient
    root: pathlib.Path
    samples: dict[str, bytes]


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    tmp = tmp_path_factory.mktemp("samples")
    good = mp4(tmp / "good.mp4")
    avi = mjpeg_avi(tmp / "good.avi")
    return {
        "mp4": good,
        "avi": avi,
        "empty": b"",
        "truncated mp4": good[: len(good) // 2],
        "html named .mp4": HTML,
        "zip named .mp4": zip_bytes(),
        # 20 frames whose stream header says 1 frame every 10 s: 200 s, over the 60 s limit.
        "longer than the limit": patch_avi(avi, scale=10, rate=1, usec_per_frame=10_000_000),
        # The container claims 2^32-1 frames (a 13-year video at 10 fps).
        "absurd frame count": patch_avi(avi, total_frames=2**32 - 1, length=2**32 - 1),
        # A time base of 1/(2^32-1) s: 4 billion frames a second.
        "absurd fps": patch_avi(avi, scale=1, rate=2**32 - 1, usec_per_frame=1),
        # One frame every 136 years.
        "absurd duration": patch_avi(avi, scale=2**32 - 1, rate=1, usec_per_frame=2**32 - 1),
        # Every frame's own JPEG header claims 65000x65000 (the most JPEG can say).
        "frames claiming 65000x65000": patch_sof(avi, 65000, 65000),
        # Only the container claims 100000x100000; the frames are 64x48.
        "header claiming 100000x100000": patch_avi(
            avi, width=100_000, height=100_000, avih_width=100_000, avih_height=100_000
        ),
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(
    tmp_path_factory: pytest.TempPathFactory, samples: dict[str, bytes]
) -> AsyncIterator[Env]:
    root = tmp_path_factory.mktemp("uploads")
    analyzer = {"max_upload_bytes": LIMIT, "max_duration_s": MAX_DURATION_S, "media_workers": 2}
    async with running_stack(root / "data", analyzer=analyzer) as stack:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{stack.analyzer.port}")
        async with channel, httpx.AsyncClient(base_url=stack.bridge.http, timeout=30) as http:
            yield Env(stack, apb_grpc.AnalyzerServiceStub(channel), http, root, samples)


async def bridge_upload(env: Env, data: bytes, name: str = "clip.mp4") -> httpx.Response:
    return await env.http.post("/api/videos", params={"name": name}, content=data)


# Each refused sample, the words its refusal must contain.
REFUSED = {
    "truncated mp4": "not a usable video",
    "html named .mp4": "not a usable video",
    "zip named .mp4": "not a usable video",
    "longer than the limit": "duration 200 s is over the limit of 60 s",
    "absurd frame count": "is over the limit of 60 s",
    "absurd fps": "fps is over the limit of 240",
    "absurd duration": "is over the limit of 60 s",
    "frames claiming 65000x65000": "not a usable video",
}


@pytest.mark.parametrize("sample", REFUSED)
async def test_bad_video_is_refused_clearly_and_leaves_nothing(env: Env, sample: str) -> None:
    data = env.samples[sample]
    error = await refusal(grpc_upload(env.stub, data))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert REFUSED[sample] in (error.details() or "")
    response = await bridge_upload(env, data)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "INVALID_ARGUMENT"
    assert REFUSED[sample] in response.json()["message"]
    assert await wait_until_empty(env.stack.videos_dir) == []
    # The service is unharmed: a good upload right after is accepted.
    ok = await grpc_upload(env.stub, env.samples["mp4"])
    assert (ok.video.width, ok.video.height) == (160, 120)
    (env.stack.videos_dir / ok.video.id).unlink()


async def test_a_lying_size_header_is_answered_with_the_real_frames(env: Env) -> None:
    # The decoder reads the frames' own size; the container's 100000x100000 claim is not used.
    response = await grpc_upload(env.stub, env.samples["header claiming 100000x100000"])
    video = response.video
    assert (video.width, video.height, video.frame_count) == (64, 48, 20)
    assert video.duration_s == pytest.approx(2.0)
    (env.stack.videos_dir / video.id).unlink()


async def test_empty_upload(env: Env) -> None:
    error = await refusal(grpc_upload(env.stub, b""))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "INVALID_ARGUMENT: the upload is empty"
    response = await bridge_upload(env, b"")
    assert response.status_code == 400
    assert response.json() == {"code": "INVALID_ARGUMENT", "message": "the upload is empty"}
    assert await wait_until_empty(env.stack.videos_dir) == []


class Feeder:
    """An upload's messages, counting what the client actually handed to gRPC and peeking at the
    data directory half-way. Iterated by the blocking client's sending thread."""

    def __init__(self, videos_dir: pathlib.Path, messages: Iterator[apb.UploadVideoRequest]):
        self.videos_dir = videos_dir
        self.messages = messages
        self.sent = 0
        self.seen_part = False

    def __iter__(self) -> Iterator[apb.UploadVideoRequest]:
        for message in self.messages:
            self.sent += len(message.chunk)
            if self.sent >= LIMIT // 2 and not self.seen_part:
                time.sleep(0.2)  # let the server write what it has
                self.seen_part = any(n.endswith(".part") for n in stored(self.videos_dir))
            if self.sent > LIMIT:
                time.sleep(0.02)  # past the limit: a slow sender, to see when it stops
            yield message


async def pushed_refusal(env: Env, feeder: Feeder) -> grpc.Call:
    """The status ending an upload whose client writes on whatever the server answers.

    A client that keeps writing after a refusal races the server's status; grpcio's asyncio
    client reports that race as INTERNAL (grpc/grpc#36066), its blocking client reports the
    server's status, which is what is under test here.
    """

    def push() -> grpc.Call:
        with grpc.insecure_channel(f"127.0.0.1:{env.stack.analyzer.port}") as channel:
            stub = apb_grpc.AnalyzerServiceStub(channel)
            with pytest.raises(grpc.RpcError) as refused:
                stub.UploadVideo(iter(feeder), timeout=10)
        assert isinstance(refused.value, grpc.Call)
        return refused.value

    return await asyncio.to_thread(push)


async def test_over_the_limit_is_refused_at_once_and_the_part_file_removed(env: Env) -> None:
    videos = env.stack.videos_dir
    # Declared over the limit: refused on the header, before any byte is stored.
    declared = Feeder(videos, upload_messages(bytes(3 * LIMIT), size=3 * LIMIT))
    error = await pushed_refusal(env, declared)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details() == f"TOO_LARGE: the upload exceeds the limit of {LIMIT} bytes"
    assert declared.sent < LIMIT
    # Declared at the limit, then more sent: refused as soon as the limit is passed.
    lying = Feeder(videos, upload_messages(bytes(5 * LIMIT), size=LIMIT))
    error = await pushed_refusal(env, lying)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details() == f"TOO_LARGE: the upload exceeds the limit of {LIMIT} bytes"
    assert lying.seen_part  # a part file existed while the upload arrived ...
    assert lying.sent < 2 * LIMIT  # ... the sender was stopped soon after the limit ...
    assert await wait_until_empty(videos) == []  # ... and nothing is left of it.
    # Declared under the limit, then more sent: refused once the declaration is passed.
    under = Feeder(videos, upload_messages(bytes(LIMIT), size=LIMIT // 4))
    error = await pushed_refusal(env, under)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == (
        f"INVALID_ARGUMENT: received more bytes than the declared size ({LIMIT // 4})"
    )
    assert await wait_until_empty(videos) == []
    # Through the bridge: its Content-Length is the analyzer's declared size.
    response = await bridge_upload(env, bytes(LIMIT + 1))
    assert response.status_code == 413
    assert response.json() == {
        "code": "TOO_LARGE",
        "message": f"the upload exceeds the limit of {LIMIT} bytes",
    }
    assert await wait_until_empty(videos) == []


HOSTILE_NAMES = {
    "../../../escape.mp4": "escape.mp4",
    "..\\..\\windows\\escape.mp4": "escape.mp4",
    "/etc/passwd": "passwd",
    "nul\x00inside.mp4": "nulinside.mp4",
    "\x1b[31mred\x07\r\n.mp4": "[31mred.mp4",
    "right-to-left \u202eevil\u202c.mp4": "right-to-left evil.mp4",
    "..": "..",
    "": "video",
}


async def test_file_names_never_become_paths(env: Env) -> None:
    good = env.samples["mp4"]
    long_name = "x" * 300 + ".mp4"
    names = {**HOSTILE_NAMES, long_name: "x" * 255}
    shown = {}
    for raw in names:
        shown[raw] = (await grpc_upload(env.stub, good, name=raw)).video.name
    for raw in names:
        if raw and len(raw) <= 255:  # the bridge's ?name= takes 1 to 255 characters
            response = await bridge_upload(env, good, name=raw)
            assert response.status_code == 201, (raw, response.text)
            assert response.json()["video"]["name"] == names[raw]
    assert shown == names
    for name in shown.values():
        assert "/" not in name
        assert "\\" not in name
        assert all(unicodedata.category(ch)[0] != "C" for ch in name)
    # The bridge refuses what it cannot take, plainly.
    too_long = await bridge_upload(env, good, name=long_name)
    assert too_long.status_code == 400
    assert too_long.json()["code"] == "INVALID_ARGUMENT"
    # On disk there are only server-made names, all inside the video directory.
    on_disk = stored(env.stack.videos_dir)
    assert len(on_disk) == len(names) + len([r for r in names if r and len(r) <= 255])
    assert all(SERVER_MADE_NAME.fullmatch(name) for name in on_disk), on_disk
    escaped = [p for p in env.root.rglob("*") if "escape" in p.name or "passwd" in p.name]
    assert escaped == []
    for name in on_disk:
        (env.stack.videos_dir / name).unlink()
