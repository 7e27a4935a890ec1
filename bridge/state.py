"""What the bridge holds while it runs, and the typed way for handlers to reach it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc
from starlette.requests import HTTPConnection

from bridge.frames import FrameHub
from bridge.metrics import Metrics
from bridge.sessions import SessionRegistry
from bridge.settings import BridgeSettings
from vigil.analyzer.v1 import analyzer_service_pb2_grpc as apb_grpc
from vigil.detector.v1 import detector_service_pb2_grpc as dpb_grpc

if TYPE_CHECKING:
    from vigil.analyzer.v1.analyzer_service_pb2_grpc import AnalyzerServiceAsyncStub
    from vigil.detector.v1.detector_service_pb2_grpc import DetectorServiceAsyncStub


@dataclass(frozen=True, slots=True)
class BridgeState:
    """Created in the app's lifespan; channels are closed when it ends."""

    settings: BridgeSettings
    detector: grpc.aio.Channel
    analyzer: grpc.aio.Channel
    frames: FrameHub
    metrics: Metrics
    sessions: SessionRegistry = field(default_factory=SessionRegistry)
    analyzer_stub: AnalyzerServiceAsyncStub = field(init=False)
    detector_stub: DetectorServiceAsyncStub = field(init=False)

    def __post_init__(self) -> None:
        # Stubs are built once: each holds a callable per method.
        object.__setattr__(self, "analyzer_stub", apb_grpc.AnalyzerServiceStub(self.analyzer))
        object.__setattr__(self, "detector_stub", dpb_grpc.DetectorServiceStub(self.detector))


def bridge_state(conn: HTTPConnection) -> BridgeState:
    state = conn.app.state.vigil
    if not isinstance(state, BridgeState):  # pragma: no cover - only without the lifespan
        raise RuntimeError("the bridge's lifespan has not run")
    return state
