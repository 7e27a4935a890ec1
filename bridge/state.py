"""What the bridge holds while it runs, and the typed way for handlers to reach it."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from starlette.requests import HTTPConnection

from bridge.frames import FrameHub
from bridge.settings import BridgeSettings


@dataclass(frozen=True, slots=True)
class BridgeState:
    """Created in the app's lifespan; channels are closed when it ends."""

    settings: BridgeSettings
    detector: grpc.aio.Channel
    analyzer: grpc.aio.Channel
    frames: FrameHub


def bridge_state(conn: HTTPConnection) -> BridgeState:
    state = conn.app.state.vigil
    if not isinstance(state, BridgeState):  # pragma: no cover - only without the lifespan
        raise RuntimeError("the bridge's lifespan has not run")
    return state
