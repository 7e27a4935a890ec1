"""The video WebSocket's ``?main=1``: a camera's main stream at full size, through the bridge, from
a real detector reading two real RTSP streams."""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from bridge.frame_messages import parse_binary_message
from detector_service.server import serve
from detector_service.settings import DetectorSettings
from vigil.bench.rtsp import RtspCamera
from vigil.sdk import AsyncDetectorClient

pytestmark = pytest.mark.timeout(60)


async def sizes(ws: ClientConnection, n: int) -> list[tuple[int, int]]:
    """The sizes of the next ``n`` frames."""
    out: list[tuple[int, int]] = []
    async with asyncio.timeout(20):
        while len(out) < n:
            message = await ws.recv()
            if isinstance(message, bytes):
                header, _ = parse_binary_message(message)
                out.append((header["width"], header["height"]))
    return out


async def test_main_1_delivers_the_main_stream_at_full_size(
    start_bridge: Any, tmp_path: pathlib.Path
) -> None:
    with (
        RtspCamera(("sub",), width=320, height=240, fps=10, keyframe_s=1.0) as sub,
        RtspCamera(("main",), width=640, height=480, fps=10, keyframe_s=1.0) as main,
    ):
        detector = await serve(DetectorSettings(port=0, backend="none", data_dir=tmp_path))
        try:
            address = f"127.0.0.1:{detector.port}"
            async with AsyncDetectorClient(address) as client:
                await client.add_source("gate", "stream", sub.url(), record_uri=main.url())
            bridge = await start_bridge(detector_address=address)
            url = f"{bridge.ws}/ws/video-stream/gate?format=binary&extras=detections"
            async with (
                connect(f"{url}&main=1", max_size=None) as full,
                connect(url, max_size=None) as tiles,
            ):
                # Both at once: the bridge keeps a feed per stream, not one per source.
                assert await sizes(full, 3) == [(640, 480)] * 3
                assert await sizes(tiles, 3) == [(320, 240)] * 3
                async with httpx.AsyncClient() as http:
                    health = (await http.get(f"{bridge.http}/health")).json()
                assert health["streams"] == {"gate": 2}  # viewers per source, both feeds
        finally:
            await detector.stop(0)
