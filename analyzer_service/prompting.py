"""What the model is told about a video: its frames (each after its time, "[01:23]") and the
timestamped timeline of detections and scene changes, for a summary and for chat.

With a text-only model the frames stay out and the timeline (with the sampled moments) is all the
model gets.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Sequence

from vigil.analyzer.v1 import analyzer_service_pb2 as pb

# Lines of the timeline put in a prompt; a longer timeline is cut (the result keeps all of it).
MAX_TIMELINE_LINES = 60

TEXT_ONLY_PROMPT = (
    "You are a security video analyst. You cannot see the video: below are the moments that were "
    "sampled from it and what automatic detectors found at each time. Summarise what happens, "
    "citing times in [mm:ss] form, and point out anything unusual or dangerous."
)
CHAT_PROMPT = (
    "You are a security video analyst answering questions about one video. Answer from the "
    "frames and the timeline below, cite the times you rely on in [mm:ss] form, and say so when "
    "they do not show the answer."
)
TEXT_ONLY_CHAT_PROMPT = (
    "You are a security video analyst answering questions about one video, which you cannot see: "
    "answer from the timeline of detections below, cite times in [mm:ss] form, and say so when it "
    "does not show the answer."
)


def clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"[{minutes:02d}:{secs:02d}]"


def pick(count: int, limit: int) -> list[int]:
    """Positions of at most ``limit`` of ``count`` frames, spread evenly, first and last kept."""
    if count <= limit:
        return list(range(count))
    if limit <= 1:
        return [0][:limit]
    step = (count - 1) / (limit - 1)
    return sorted({round(n * step) for n in range(limit)})


@dataclasses.dataclass(frozen=True)
class Frames:
    """The frames a prompt shows, in time order, and their labels."""

    files: list[pathlib.Path]
    labels: list[str]


def frames_for_model(
    frames: Sequence[pb.SampledFrame], files: Sequence[pathlib.Path], *, limit: int, images: bool
) -> Frames:
    if not images or limit < 1:
        return Frames([], [])
    chosen = pick(len(frames), limit)
    return Frames([files[n] for n in chosen], [clock(frames[n].time_s) for n in chosen])


def timeline_lines(events: Sequence[pb.TimelineEvent]) -> list[str]:
    lines = []
    for event in events[:MAX_TIMELINE_LINES]:
        when = clock(event.start_s)
        if event.end_s > event.start_s:
            when += f"-{clock(event.end_s)}"
        lines.append(f"- {when} {event.description}")
    if len(events) > MAX_TIMELINE_LINES:
        lines.append(f"- ... and {len(events) - MAX_TIMELINE_LINES} more events")
    return lines


def context(
    video: pb.Video,
    frames: Sequence[pb.SampledFrame],
    events: Sequence[pb.TimelineEvent],
    *,
    shown: Frames,
    summary: str = "",
) -> str:
    """The facts about the video that go with the instructions."""
    parts = [f"The video is {clock(video.duration_s)} long ({video.duration_s / 60:.1f} min)."]
    if shown.files:
        parts.append(
            f"The images are {len(shown.files)} frames of it in time order, each after its time."
        )
    else:
        times = ", ".join(clock(f.time_s) for f in frames[:MAX_TIMELINE_LINES])
        parts.append(f"Moments sampled from it: {times}.")
    lines = timeline_lines(events)
    if lines:
        parts.append("Timeline of detections and scene changes:\n" + "\n".join(lines))
    else:
        parts.append("The detector and the scene-change scan found nothing to report.")
    if summary:
        parts.append(f"Summary of the video written earlier:\n{summary}")
    return "\n\n".join(parts)
