"""The timeline of a video built from what the analysis can vouch for without a language model:
the detector's findings and the scene changes.

Each event rests on sampled frames and says so (``frame_times_s``): an object class seen in
consecutive sampled frames is one event from the first of those frames to the last; a scene
change is an event between the last moment looked at before the cut and the first after it.
"""

from __future__ import annotations

import re
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


# [mm:ss] or [h:mm:ss], as prompts ask the model to cite times.
_CITED = re.compile(r"\[(\d{1,3}):([0-5]\d)(?::([0-5]\d))?\]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
# A model event's description is its sentence, cut to this many characters.
MAX_DESCRIPTION = 300


def cited_times(text: str, *, duration_s: float | None = None) -> list[float]:
    """Times in seconds that ``text`` cites as [mm:ss] or [h:mm:ss], in order, without repeats;
    with ``duration_s``, only those inside the video (a model may cite what is not there)."""
    times: list[float] = []
    for match in _CITED.finditer(text):
        first, second, third = match.groups()
        if third is None:
            seconds = int(first) * 60 + int(second)
        else:
            seconds = int(first) * 3600 + int(second) * 60 + int(third)
        if duration_s is not None and seconds > duration_s + 1:
            continue
        if float(seconds) not in times:
            times.append(float(seconds))
    return times


def nearest_frames(frames: Sequence[pb.SampledFrame], time_s: float) -> list[pb.SampledFrame]:
    """The sampled frame closest to ``time_s`` (both, if it lies exactly between two)."""
    if not frames:
        return []
    best = min(abs(f.time_s - time_s) for f in frames)
    return [f for f in frames if abs(abs(f.time_s - time_s) - best) < 1e-6]


def model_events(
    summary: str, frames: Sequence[pb.SampledFrame], *, duration_s: float
) -> list[pb.TimelineEvent]:
    """One event per sentence of the model's summary that cites times: from its first cited time
    to its last, described by the sentence, resting on the sampled frames nearest those times."""
    events: list[pb.TimelineEvent] = []
    for sentence in _SENTENCE_END.split(summary):
        sentence = sentence.strip()
        times = cited_times(sentence, duration_s=duration_s)
        if not times:
            continue
        rest: dict[float, pb.SampledFrame] = {}
        for time_s in times:
            for frame in nearest_frames(frames, time_s):
                rest[frame.time_s] = frame
        detections = [d for f in rest.values() for d in f.detections]
        description = sentence
        if len(description) > MAX_DESCRIPTION:
            description = description[: MAX_DESCRIPTION - 1].rstrip() + "…"
        events.append(
            pb.TimelineEvent(
                start_s=min(times),
                end_s=max(times),
                description=description,
                detections=detections,
                frame_times_s=sorted(rest),
            )
        )
    return events


def merge(*timelines: Sequence[pb.TimelineEvent]) -> list[pb.TimelineEvent]:
    """Events of several timelines in one, in time order."""
    events = [event for timeline in timelines for event in timeline]
    events.sort(key=lambda e: (e.start_s, e.end_s))
    return events
