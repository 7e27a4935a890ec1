"""What the bridge holds while it runs, and the typed way for handlers to reach it."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import HTTPConnection

from bridge.frames import FrameHub
from bridge.metrics import Metrics
from bridge.session_names import SessionBindings
from bridge.settings import BridgeSettings
from vigil.sdk import AsyncAnalyzerClient, AsyncDetectorClient


@dataclass(frozen=True, slots=True)
class BridgeState:
    """Created in the app's lifespan; the clients are closed when it ends."""

    settings: BridgeSettings
    detector: AsyncDetectorClient
    analyzer: AsyncAnalyzerClient
    frames: FrameHub
    metrics: Metrics
    sessions: SessionBindings


def bridge_state(conn: HTTPConnection) -> BridgeState:
    state = conn.app.state.vigil
    if not isinstance(state, BridgeState):  # pragma: no cover - only without the lifespan
        raise RuntimeError("the bridge's lifespan has not run")
    return state
