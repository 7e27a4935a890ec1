"""Vigil's Python SDK: typed clients of the detector and analyzer services.

Blocking and asyncio flavours share methods and plain result values::

    from vigil.sdk import ClientOptions, DetectorClient

    with DetectorClient(ClientOptions("127.0.0.1:50051", token="...")) as detector:
        for source in detector.list_sources():
            print(source.id, source.state)

Failed calls raise ``vigil.core.errors`` classes (``NotFound``, ``Unavailable``, ...) with the
service's stable ``code``; every value keeps its protobuf message as ``.proto``.
"""

from vigil.sdk.analyzer import AnalyzerClient, AsyncAnalyzerClient
from vigil.sdk.analyzer_types import (
    AnalysisEvent,
    AnalysisOptions,
    AnalysisResult,
    ChatChunk,
    Job,
    RecordingRange,
    SampledFrame,
    StageTimings,
    TimelineEvent,
    UploadResult,
    Video,
)
from vigil.sdk.common import Box, Detection, ErrorInfo, Page
from vigil.sdk.detector import AsyncDetectorClient, DetectorClient
from vigil.sdk.detector_types import (
    DetectFrame,
    DetectResult,
    Frame,
    Incident,
    IncidentEvent,
    Source,
    SourceCounters,
    SourceEvent,
    SourceSpec,
)
from vigil.sdk.errors import from_rpc_error
from vigil.sdk.evidence import EvidenceInfo
from vigil.sdk.model_types import Picture, RuleAnswer, Sampling, Verification
from vigil.sdk.motion import MotionSettings
from vigil.sdk.options import (
    DEFAULT_ANALYZER_ADDRESS,
    DEFAULT_DETECTOR_ADDRESS,
    ClientOptions,
    RetryPolicy,
    with_tls,
)
from vigil.sdk.recording_types import (
    Coverage,
    ExportInfo,
    FrameDetections,
    RecordedDetections,
    Recording,
    Snapshot,
    TimeRange,
)
from vigil.sdk.review_types import IncidentStats, Review
from vigil.sdk.streams import AsyncStream, Stream
from vigil.sdk.watch_rules import WatchRule, WatchRuleStatus
from vigil.sdk.zones import Zone

__all__ = [
    "DEFAULT_ANALYZER_ADDRESS",
    "DEFAULT_DETECTOR_ADDRESS",
    "AnalysisEvent",
    "AnalysisOptions",
    "AnalysisResult",
    "AnalyzerClient",
    "AsyncAnalyzerClient",
    "AsyncDetectorClient",
    "AsyncStream",
    "Box",
    "ChatChunk",
    "ClientOptions",
    "Coverage",
    "DetectFrame",
    "DetectResult",
    "Detection",
    "DetectorClient",
    "ErrorInfo",
    "EvidenceInfo",
    "ExportInfo",
    "Frame",
    "FrameDetections",
    "Incident",
    "IncidentEvent",
    "IncidentStats",
    "Job",
    "MotionSettings",
    "Page",
    "Picture",
    "RecordedDetections",
    "Recording",
    "RecordingRange",
    "RetryPolicy",
    "Review",
    "RuleAnswer",
    "SampledFrame",
    "Sampling",
    "Snapshot",
    "Source",
    "SourceCounters",
    "SourceEvent",
    "SourceSpec",
    "StageTimings",
    "Stream",
    "TimeRange",
    "TimelineEvent",
    "UploadResult",
    "Verification",
    "Video",
    "WatchRule",
    "WatchRuleStatus",
    "Zone",
    "from_rpc_error",
    "with_tls",
]
