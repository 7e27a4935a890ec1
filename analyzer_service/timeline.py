"""The timeline of a video built from what the analysis can vouch for without a language model:
the detector's findings and the scene changes.

Each event rests on sampled frames and says so (``frame_times_s``): an object class seen in
consecutive sampled frames is one event from the first of those frames to the last; a scene
change is an event between the last moment looked at before the cut and the first after it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.common.v1 import common_pb2

SCENE_CHANGE = "scene change"


def _best_per_class(frame: pb.SampledFrame) -> dict[str, common_pb2.Detection]:
    best: dict[str, common_pb2.Detection] = {}
    for detection in frame.detections:
        current = best.get(detection.class_name)
        if current is None or detection.confidence > current.confidence:
            best[detection.class_name] = detection
    return best


def describe(class_name: str, detections: Sequence[common_pb2.Detection]) -> str:
    confidence = max(d.confidence for d in detections)
    weapon = any(d.is_weapon for d in detections)
    kind = "weapon, " if weapon else ""
    return f"{class_name} seen ({kind}confidence {confidence:.2f})"


def build(
    frames: Sequence[pb.SampledFrame], scene_starts: Mapping[float, float] | None = None
) -> list[pb.TimelineEvent]:
    """Events in time order from ``frames`` (any order).

    ``scene_starts`` maps the time of a frame flagged ``scene_change`` to the time of the moment
    looked at just before it (the cut lies in between); without it the event is the frame alone.
    """
    ordered = sorted(frames, key=lambda f: f.time_s)
    events: list[pb.TimelineEvent] = []
    # Runs of consecutive sampled frames per class: class -> (frames, their best detections).
    open_runs: dict[str, tuple[list[float], list[common_pb2.Detection]]] = {}

    def close(class_name: str) -> None:
        times, detections = open_runs.pop(class_name)
        events.append(
            pb.TimelineEvent(
                start_s=times[0],
                end_s=times[-1],
                description=describe(class_name, detections),
                detections=detections,
                frame_times_s=times,
            )
        )

    for frame in ordered:
        seen = _best_per_class(frame)
        for class_name in [c for c in open_runs if c not in seen]:
            close(class_name)
        for class_name, detection in seen.items():
            times, detections = open_runs.setdefault(class_name, ([], []))
            times.append(frame.time_s)
            detections.append(detection)
        if frame.scene_change:
            start = (scene_starts or {}).get(frame.time_s, frame.time_s)
            events.append(
                pb.TimelineEvent(
                    start_s=min(start, frame.time_s),
                    end_s=frame.time_s,
                    description=SCENE_CHANGE,
                    frame_times_s=[frame.time_s],
                )
            )
    for class_name in list(open_runs):
        close(class_name)
    events.sort(key=lambda e: (e.start_s, e.end_s, e.description))
    return events
