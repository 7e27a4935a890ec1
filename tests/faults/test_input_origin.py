"""Hostile origins on every WebSocket path and on CORS pre-flights, including the DNS-rebinding
shape (an attacker's name that resolves to the bridge, so Origin matches Host).

Already covered (tests/bridge/test_security.py, tests/bridge/test_app.py): a foreign Origin on
/ws/session, /ws/video-stream and Socket.IO's WebSocket transport, a pre-flight on /api/analyses.
"""

from __future__ import annotations

import httpx
import pytest
import websockets
from websockets.asyncio.client import connect
from websockets.typing import Origin

from tests.faults.inputs import running_bridge, running_detector

pytestmark = pytest.mark.timeout(30)

WS_PATHS = ["/ws/session", "/ws/video-stream", "/ws/video-stream/default"]
WS_PATHS += ["/socket.io/?EIO=4&transport=websocket"]


async def test_hostile_origins_are_refused_everywhere() -> None:
    async with (
        running_detector() as detector,
        running_bridge(detector_address=f"127.0.0.1:{detector.port}") as bridge,
    ):
        rebound = f"evil.example:{bridge.port}"
        hostile: list[tuple[str, dict[str, str]]] = [
            ("http://evil.example", {}),
            ("null", {}),  # sandboxed iframes and file:// pages
            (f"http://127.0.0.1:{bridge.port + 1}", {}),  # another port of this host
            (f"http://{rebound}", {"Host": rebound}),  # DNS rebinding: Origin == Host
        ]
        for path in WS_PATHS:
            for origin, headers in hostile:
                with pytest.raises(websockets.InvalidStatus) as refused:
                    await connect(
                        f"{bridge.ws}{path}", origin=Origin(origin), additional_headers=headers
                    )
                assert refused.value.response.status_code in (400, 403), (path, origin)
        # Socket.IO's long-polling handshake and its pre-flight, and the API's pre-flights.
        async with httpx.AsyncClient(base_url=bridge.http) as http:
            for origin, headers in hostile:
                poll = await http.get(
                    "/socket.io/?EIO=4&transport=polling",
                    headers={"origin": origin, **headers},
                )
                assert poll.status_code == 400, (origin, poll.text)
                assert "access-control-allow-origin" not in poll.headers
                for path in ["/api/videos?name=a.mp4", "/api/analyses/x/chat", "/socket.io/"]:
                    preflight = await http.options(
                        path,
                        headers={
                            "origin": origin,
                            "access-control-request-method": "POST",
                            "access-control-request-headers": "authorization",
                            **headers,
                        },
                    )
                    assert "access-control-allow-origin" not in preflight.headers, path
                    assert preflight.status_code >= 400, (path, origin)
        # The bridge's own page, by IP address or localhost, is let in.
        for own in (bridge.http, f"http://localhost:{bridge.port}"):
            host = own.removeprefix("http://")
            async with connect(
                f"{bridge.ws}/ws/session", origin=Origin(own), additional_headers={"Host": host}
            ) as ws:
                await ws.send('{"event": "ping"}')
                assert "pong" in str(await ws.recv())
        async with httpx.AsyncClient(base_url=bridge.http) as http:
            poll = await http.get(
                "/socket.io/?EIO=4&transport=polling", headers={"origin": bridge.http}
            )
        assert poll.status_code == 200
        assert poll.text.startswith("0{")  # engine.io's open packet
        assert poll.headers["access-control-allow-origin"] == bridge.http
