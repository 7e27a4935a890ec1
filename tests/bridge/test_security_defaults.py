"""The bridge's safe defaults and the token's trip to gRPC on the streaming paths: loopback bind,
the allowed-origins rule (credentials are never allowed, so ``*`` may only stand alone), and the
token on a WebSocket's frame subscription and a session's job stream."""

from __future__ import annotations

import pathlib
from typing import Any

import httpx
import orjson
import pytest
import websockets
from pydantic import ValidationError
from websockets.asyncio.client import connect
from websockets.typing import Origin

from analyzer_service.server import AnalyzerServer
from bridge.server import listen
from bridge.settings import BridgeSettings
from tests.bridge.session_clients import (
    Bridge,
    WsSession,
    job_events,
    join,
    nothing_pending,
    upload,
)

pytestmark = pytest.mark.timeout(30)

TOKEN = "s3cret-token"


def test_binds_loopback_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VIGIL_BRIDGE_HOST", raising=False)
    settings = BridgeSettings(_env_file=None, port=0)
    assert settings.host == "127.0.0.1"
    with listen(settings) as sock:
        assert sock.getsockname()[0] == "127.0.0.1"
    monkeypatch.setenv("VIGIL_BRIDGE_HOST", "0.0.0.0")
    assert BridgeSettings(_env_file=None).host == "0.0.0.0"


def test_a_wildcard_origin_may_only_stand_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match='"\\*" allows every origin'):
        BridgeSettings(_env_file=None, allowed_origins=["*", "http://127.0.0.1:8000"])
    monkeypatch.setenv("VIGIL_BRIDGE_ALLOWED_ORIGINS", '["http://localhost:8000", "*"]')
    with pytest.raises(ValidationError, match='"\\*" allows every origin'):
        BridgeSettings(_env_file=None)
    monkeypatch.setenv("VIGIL_BRIDGE_ALLOWED_ORIGINS", '["*"]')
    assert BridgeSettings(_env_file=None).allowed_origins == ["*"]


async def test_a_wildcard_origin_never_comes_with_credentials(
    start_bridge: Any, fake_detector: Any
) -> None:
    bridge: Bridge = await start_bridge(
        detector_address=fake_detector.address, allowed_origins=["*"], token=TOKEN
    )
    anywhere = {"origin": "http://anywhere.example"}
    auth = {"authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=bridge.http) as client:
        preflight = await client.options(
            "/metrics",
            headers={
                **anywhere,
                "access-control-request-method": "GET",
                "access-control-request-headers": "authorization",
            },
        )
        # /metrics needs the token and no backend.
        without = await client.get("/metrics", headers=anywhere)
        with_token = await client.get("/metrics", headers={**anywhere, **auth})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in preflight.headers
    # Any origin may call, but the token is still required: "*" opens CORS, not the API.
    assert without.status_code == 401
    assert with_token.status_code == 200
    assert with_token.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in with_token.headers
    with pytest.raises(websockets.InvalidStatus) as refused:
        await connect(f"{bridge.ws}/ws/session", origin=Origin("http://anywhere.example"))
    assert refused.value.response.status_code == 401


async def test_a_video_stream_subscription_passes_the_token_on(
    start_bridge: Any, fake_detector: Any
) -> None:
    bridge: Bridge = await start_bridge(detector_address=fake_detector.address, token=TOKEN)
    with pytest.raises(websockets.InvalidStatus):
        await connect(f"{bridge.ws}/ws/video-stream/cam?token=wrong")
    # A refused viewer never reached the detector.
    assert fake_detector.calls == 0
    async with connect(f"{bridge.ws}/ws/video-stream/cam?token={TOKEN}") as ws:
        assert orjson.loads(await ws.recv())["type"] == "frame"
    assert fake_detector.calls == 1
    assert fake_detector.metadata[0]["authorization"] == f"Bearer {TOKEN}"


async def test_a_session_follows_a_job_with_the_token_on(
    start_bridge: Any,
    start_analyzer: Any,
    fake_detector: Any,
    video_file: pathlib.Path,
) -> None:
    # The analyzer refuses every call without the token, so events flow only if it rides on
    # the upload (client stream) and on the job's event stream (server stream).
    analyzer: AnalyzerServer = await start_analyzer(token=TOKEN)
    bridge: Bridge = await start_bridge(
        detector_address=fake_detector.address,
        analyzer_address=f"127.0.0.1:{analyzer.port}",
        token=TOKEN,
    )
    async with httpx.AsyncClient(base_url=bridge.http, timeout=20) as client:
        missing = await client.post("/api/videos", params={"name": "x.mp4"}, content=b"x")
    assert missing.status_code == 401
    auth = {"authorization": f"Bearer {TOKEN}"}
    uploaded = await upload(bridge, video_file, headers=auth, analyze="true")
    job_id = uploaded["job"]["id"]
    async with connect(f"{bridge.ws}/ws/session?token={TOKEN}") as ws:
        conn = WsSession(ws)
        await join(conn, job_id=job_id)
        events = await job_events(conn, 6)
        await nothing_pending(conn)
    assert [name for name, _ in events][-1] == "analysis_complete"
    assert [d["sequence"] for _, d in events] == list(range(1, 7))
