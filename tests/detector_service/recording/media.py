"""Test helpers: reading an RTSP camera independently, and H.264 packets as NAL units."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import av

if TYPE_CHECKING:
    from detector_service.recording.writer import VideoPacket

RTSP_OPTIONS = {"rtsp_transport": "tcp", "timeout": "5000000"}


def open_rtsp(url: str) -> av.container.InputContainer:
    return av.open(url, options=RTSP_OPTIONS, timeout=(15.0, 5.0))


def annexb_nals(data: bytes) -> tuple[bytes, ...]:
    """NAL units of an Annex B packet (start codes), as RTSP's depacketiser delivers them."""
    # A 4-byte start code leaves a zero at the end of the previous chunk; NAL units themselves
    # never end in a zero byte (their last byte holds the stop bit).
    return tuple(chunk.rstrip(b"\0") for chunk in data.split(b"\0\0\1") if chunk.rstrip(b"\0"))


def avcc_nals(data: bytes) -> tuple[bytes, ...]:
    """NAL units of an MP4 packet (each prefixed by its 4-byte length)."""
    nals = []
    at = 0
    while at < len(data):
        size = int.from_bytes(data[at : at + 4], "big")
        nals.append(data[at + 4 : at + 4 + size])
        at += 4 + size
    return tuple(nals)


@dataclass(frozen=True)
class Seen:
    nals: tuple[bytes, ...]
    t: float  # presentation time, seconds of the stream's clock
    key: bool


def file_packets(path: str) -> list[Seen]:
    with av.open(path) as container:
        stream = container.streams.video[0]
        return [
            Seen(avcc_nals(bytes(p)), float(p.pts * Fraction(p.time_base)), p.is_keyframe)
            for p in container.demux(stream)
            if p.size and p.pts is not None
        ]


class Watcher:
    """A second, independent client of an RTSP mount, keeping every packet it receives."""

    def __init__(self, url: str) -> None:
        self.container = open_rtsp(url)
        self.seen: list[Seen] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        stream = self.container.streams.video[0]
        for p in self.container.demux(stream):
            if self._stop.is_set():
                break
            if p.size and p.pts is not None:
                tb = Fraction(p.time_base)
                self.seen.append(Seen(annexb_nals(bytes(p)), float(p.pts * tb), p.is_keyframe))

    def stop(self) -> list[Seen]:
        self._stop.set()
        self._thread.join(10)
        self.container.close()
        return self.seen


def first_packets(count: int, packets: Iterator[VideoPacket]) -> Iterator[VideoPacket]:
    """The first ``count`` packets that carry data (a live camera never ends by itself)."""
    n = 0
    for packet in packets:
        if n >= count:
            return
        if packet.size:
            n += 1
        yield packet


def decoded(data: bytes) -> list[av.VideoFrame]:
    """The pictures of an MP4 held in memory (an export as a client receives it)."""
    with av.open(io.BytesIO(data), "r") as container:
        return list(container.decode(video=0))
