"""The HTTP API end to end: uploads streamed to a real analyzer, jobs, sources on a real detector,
readiness, metrics, the OpenAPI schema, and binary frames."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import cv2
import httpx
import numpy as np
import orjson
import pytest
from websockets.asyncio.client import connect

from bridge.frame_messages import parse_binary_message

pytestmark = pytest.mark.timeout(30)

MB = 1024 * 1024


@pytest.fixture
async def bridge(start_bridge: Any, detector: Any, analyzer: Any) -> Any:
    return await start_bridge(
        detector_address=detector.address, analyzer_address=f"127.0.0.1:{analyzer.port}"
    )


@pytest.fixture
async def client(bridge: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=bridge.http, timeout=20) as c:
        yield c


async def test_upload_is_forwarded_while_it_arrives(
    client: httpx.AsyncClient, analyzer: Any
) -> None:
    total = 30 * MB
    first_part = 8 * MB
    seen_part_size = 0

    def part_size() -> int:
        return sum(p.stat().st_size for p in analyzer.settings.videos_dir.glob("*.part"))

    async def body() -> AsyncIterator[bytes]:
        nonlocal seen_part_size
        block = b"\x00" * MB
        for _ in range(first_part // MB):
            yield block
        # Hold the rest back until the analyzer has written what came so far to disk: the
        # bridge forwarded it before the body was complete (and so never held it whole).
        async with asyncio.timeout(5):
            while (seen_part_size := part_size()) < 4 * MB:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        for _ in range((total - first_part) // MB):
            yield block

    response = await client.post(
        "/api/videos",
        params={"name": "noise.mp4"},
        content=body(),
        headers={"content-length": str(total), "content-type": "application/octet-stream"},
    )
    assert seen_part_size >= 4 * MB
    # 30 MB of zeros are no video: refused with the analyzer's own words, and nothing kept.
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "INVALID_ARGUMENT"
    assert response.json()["message"].startswith("not a usable video")
    assert part_size() == 0


async def test_upload_limits_are_enforced_before_reading(bridge: Any) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
    writer.write(
        b"POST /api/videos?name=huge.mp4 HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: 100000000000\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    await writer.drain()
    # The answer comes before a single byte of the body was sent.
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 413")
    writer.close()


async def test_upload_needs_a_declared_size_and_a_plain_body(client: httpx.AsyncClient) -> None:
    async def chunked() -> AsyncIterator[bytes]:
        yield b"abc"

    response = await client.post("/api/videos", params={"name": "a.mp4"}, content=chunked())
    assert response.status_code == 411
    assert response.json()["code"] == "LENGTH_REQUIRED"
    # A form is taken too (tests/bridge/test_uploads.py); three bytes are no video.
    response = await client.post("/api/videos", params={"name": "a.mp4"}, files={"f": b"abc"})
    assert response.status_code == 400
    assert response.json()["message"].startswith("not a usable video")
    response = await client.post("/api/videos", content=b"abc")
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_ARGUMENT"
    assert "name" in response.json()["message"]


async def test_analyses_start_get_list_page_and_cancel(
    client: httpx.AsyncClient, video_file: pathlib.Path
) -> None:
    response = await client.post(
        "/api/videos",
        params={"name": "clip.mp4"},
        content=video_file.read_bytes(),  # noqa: ASYNC240
    )
    assert response.status_code == 201, response.text
    video = response.json()["video"]
    assert (video["width"], video["height"], video["name"]) == (320, 240, "clip.mp4")
    assert response.json()["job"] is None
    # One worker and short jobs: started together, the last ones wait in the queue a while.
    body = {"video_id": video["id"], "options": {"sampling_policy": "seed"}}
    responses = await asyncio.gather(*(client.post("/api/analyses", json=body) for _ in range(24)))
    assert {r.status_code for r in responses} == {201}
    started = sorted((r.json() for r in responses), key=lambda j: j["created_at"])
    last = max(started, key=lambda j: j["queue_position"])
    assert last["state"] == "queued"
    assert last["queue_position"] > 10
    cancelled = (await client.post(f"/api/analyses/{last['id']}/cancel")).json()
    assert cancelled["state"] == "cancelled"
    assert cancelled["error"]["code"] == "CANCELLED"
    got = (await client.get(f"/api/analyses/{started[0]['id']}")).json()
    assert got["video"]["id"] == video["id"]
    first = (await client.get("/api/analyses", params={"page_size": 20})).json()
    assert len(first["jobs"]) == 20
    assert first["next_page_token"]
    rest = (
        await client.get(
            "/api/analyses", params={"page_size": 20, "page_token": first["next_page_token"]}
        )
    ).json()
    assert rest["next_page_token"] == ""
    # Newest first, every job exactly once over the pages.
    paged = [j["id"] for j in first["jobs"] + rest["jobs"]]
    assert sorted(paged) == sorted(j["id"] for j in started)
    created = [j["created_at"] for j in first["jobs"] + rest["jobs"]]
    assert created == sorted(created, reverse=True)
    cancelled_only = (await client.get("/api/analyses", params={"state": "cancelled"})).json()
    assert [j["id"] for j in cancelled_only["jobs"]] == [last["id"]]


async def test_bad_input_gets_clear_json_errors(client: httpx.AsyncClient) -> None:
    cases = [
        (await client.get("/api/analyses/nope"), 404, "NOT_FOUND"),
        (await client.post("/api/analyses", json={}), 400, "INVALID_ARGUMENT"),
        (await client.post("/api/analyses", content=b"{oops"), 400, "INVALID_ARGUMENT"),
        (await client.post("/api/analyses", json={"video_id": "none"}), 404, "NOT_FOUND"),
        (
            await client.post(
                "/api/analyses", json={"video_id": "v", "options": {"sampling_policy": "x"}}
            ),
            400,
            "INVALID_ARGUMENT",
        ),
        (await client.get("/api/analyses", params={"state": "sleeping"}), 400, "INVALID_ARGUMENT"),
        (await client.get("/api/analyses", params={"page_size": 0}), 400, "INVALID_ARGUMENT"),
        (
            await client.post("/api/analyses/nope/chat", json={"question": ""}),
            400,
            "INVALID_ARGUMENT",
        ),
        (await client.get("/api/nothing-here"), 404, "NOT_FOUND"),
    ]
    for response, status, code in cases:
        assert response.status_code == status, (response.request.url, response.text)
        body = response.json()
        assert body["code"] == code
        assert body["message"]
        assert "Traceback" not in response.text
    missing = cases[1][0].json()
    assert missing["message"] == "body: Value error, give exactly one of video_id and recording"


async def test_sources_and_incidents(client: httpx.AsyncClient) -> None:
    listed = (await client.get("/api/sources")).json()
    assert [s["spec"]["id"] for s in listed["sources"]] == ["default"]
    assert listed["sources"][0]["spec"]["kind"] == "test_pattern"
    spec = {"id": "cam2", "kind": "test_pattern", "display_name": "Second"}
    added = await client.post("/api/sources", json=spec)
    assert added.status_code == 201, added.text
    assert added.json()["state"] == "idle"
    again = await client.post("/api/sources", json=spec)
    assert (again.status_code, again.json()["code"]) == (409, "ALREADY_EXISTS")
    bad = await client.post("/api/sources", json={"id": "../x", "kind": "file"})
    assert (bad.status_code, bad.json()["code"]) == (400, "INVALID_ARGUMENT")
    removed = await client.delete("/api/sources/cam2")
    assert removed.status_code == 200
    assert removed.json()["spec"]["display_name"] == "Second"
    gone = await client.delete("/api/sources/cam2")
    assert (gone.status_code, gone.json()["code"]) == (404, "NOT_FOUND")
    incidents = await client.get("/api/incidents", params={"source_id": "default"})
    assert incidents.status_code == 200, incidents.text
    assert incidents.json() == {"incidents": [], "next_page_token": ""}


async def test_source_modes(client: httpx.AsyncClient) -> None:
    spec = {"id": "watched", "kind": "test_pattern", "mode": "always", "max_fps": 5}
    added = await client.post("/api/sources", json=spec)
    assert added.status_code == 201, added.text
    assert (added.json()["spec"]["mode"], added.json()["state"]) == ("always", "starting")
    # Left out, the mode is the kind's; answers carry the mode in effect.
    played = await client.post(
        "/api/sources", json={"id": "played", "kind": "file", "uri": "/v.mp4"}
    )
    assert played.json()["spec"]["mode"] == "on_demand"
    listed = (await client.get("/api/sources")).json()["sources"]
    modes = {s["spec"]["id"]: s["spec"]["mode"] for s in listed}
    assert modes == {"default": "on_demand", "played": "on_demand", "watched": "always"}
    bad = await client.post("/api/sources", json={**spec, "id": "x", "mode": "sometimes"})
    assert (bad.status_code, bad.json()["code"]) == (400, "INVALID_ARGUMENT")


async def test_a_cameras_main_stream_is_masked(client: httpx.AsyncClient) -> None:
    camera = {
        "id": "gate", "kind": "stream", "mode": "on_demand",
        "uri": "rtsp://u:pw1@127.0.0.1:9/sub", "record_uri": "rtsp://u:pw2@127.0.0.1:9/main",
    }  # fmt: skip
    added = await client.post("/api/sources", json=camera)
    assert added.status_code == 201, added.text
    listed = await client.get("/api/sources")
    for response in (added, listed):
        assert "pw1" not in response.text
        assert "pw2" not in response.text
    assert added.json()["spec"]["record_uri"] == "rtsp://u:***@127.0.0.1:9/main"


async def test_ready_follows_the_backends(
    bridge: Any, client: httpx.AsyncClient, analyzer: Any
) -> None:
    ok = await client.get("/ready")
    assert (ok.status_code, ok.json()["status"]) == (200, "ok")
    await analyzer.service.set_serving(False)
    draining = await client.get("/ready")
    assert draining.status_code == 503
    assert draining.json()["services"]["analyzer"] == "NOT_SERVING"


async def test_ready_is_503_when_a_backend_is_unreachable(start_bridge: Any, detector: Any) -> None:
    bridge = await start_bridge(detector_address=detector.address)
    async with httpx.AsyncClient(base_url=bridge.http) as c:
        response = await c.get("/ready")
    assert response.status_code == 503
    assert response.json()["services"] == {
        "bridge": "SERVING",
        "detector": "SERVING",
        "analyzer": "UNREACHABLE",
    }


async def test_binary_frames(bridge: Any) -> None:
    url = f"{bridge.ws}/ws/video-stream/default?format=binary&extras=latency,dropped"
    async with connect(url, max_size=None) as ws:
        messages = [await asyncio.wait_for(ws.recv(), 5) for _ in range(3)]
    assert all(isinstance(m, bytes) for m in messages)
    headers = []
    for message in messages:
        assert isinstance(message, bytes)
        length = int.from_bytes(message[:4], "big")
        header = orjson.loads(message[4 : 4 + length])
        assert message[4 + length : 4 + length + 2] == b"\xff\xd8"  # a JPEG starts here
        assert (header, message[4 + length :]) == parse_binary_message(message)
        headers.append(header)
    assert set(headers[0]) == {
        "type", "timestamp", "sequence", "latency_ms", "inference_ms", "dropped",
    }  # fmt: skip
    assert headers[1]["sequence"] > headers[0]["sequence"]
    last = messages[-1]
    assert isinstance(last, bytes)
    image = cv2.imdecode(np.frombuffer(parse_binary_message(last)[1], np.uint8), 1)
    assert image is not None
    assert image.shape == (720, 1280, 3)
    async with connect(f"{bridge.ws}/ws/video-stream?format=xml") as ws:
        error = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
        await ws.wait_closed()
    assert error["code"] == "INVALID_ARGUMENT"
    assert ws.close_code == 1008


async def test_metrics_count_what_happens(bridge: Any, client: httpx.AsyncClient) -> None:
    async with connect(f"{bridge.ws}/ws/video-stream", max_size=None) as ws:
        for _ in range(3):
            await asyncio.wait_for(ws.recv(), 5)
        during = (await client.get("/metrics")).text
    async with connect(f"{bridge.ws}/ws/session") as ws:
        await ws.send('{"event": "ping", "data": {}}')
        await asyncio.wait_for(ws.recv(), 5)
    await client.get("/api/analyses/none")
    text = (await client.get("/metrics")).text
    assert 'vigil_bridge_connections{kind="video"} 1.0' in during
    sent = [line for line in text.splitlines() if line.startswith("vigil_bridge_frames_sent_total")]
    assert sent
    assert float(sent[0].split()[-1]) >= 3
    assert 'vigil_bridge_frames_dropped_total{source="default"}' in text
    assert 'vigil_bridge_ws_messages_total{direction="in",endpoint="session"} 1.0' in text
    assert 'vigil_bridge_ws_messages_total{direction="out",endpoint="session"} 1.0' in text
    assert 'vigil_bridge_http_requests_total{method="GET",status="404"} 1.0' in text
    assert 'vigil_bridge_http_requests_total{method="GET",status="200"}' in text


async def test_openapi_lists_every_endpoint_with_examples(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    paths = schema["paths"]
    for path, method in [
        ("/api/videos", "post"), ("/api/analyses", "post"), ("/api/analyses", "get"),
        ("/api/analyses/{job_id}", "get"), ("/api/analyses/{job_id}/cancel", "post"),
        ("/api/analyses/{job_id}/chat", "post"), ("/api/sources", "get"),
        ("/api/sources", "post"), ("/api/sources/{source_id}", "delete"),
        ("/api/incidents", "get"), ("/health", "get"), ("/ready", "get"), ("/metrics", "get"),
        ("/api/sources/{source_id}", "put"), ("/api/events", "get"),
        ("/api/incidents/{incident_id}/evidence.zip", "get"),
    ]:  # fmt: skip
        assert method in paths[path], (path, method)
    upload = paths["/api/videos"]["post"]
    assert "application/octet-stream" in upload["requestBody"]["content"]
    assert "413" in upload["responses"]
    chat = paths["/api/analyses/{job_id}/chat"]["post"]
    assert "example" in chat["responses"]["200"]["content"]["application/x-ndjson"]
    schemas = schema["components"]["schemas"]
    for name in ["Job", "Video", "SourceSpec", "StartAnalysis", "UploadResult", "JobPage"]:
        assert schemas[name].get("examples"), name
    assert schemas["Job"]["examples"][0]["stage"] == "frame_extraction"
    assert "format=binary" in schema["info"]["description"]
    assert "/ws/session" in schema["info"]["description"]
