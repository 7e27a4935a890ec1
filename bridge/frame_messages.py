"""The frame hub's messages: each frame encoded once, as JSON text or binary, for every viewer.

Each frame is turned into its WebSocket message once (base64 + orjson, ~0.25 ms for 100 KB) and
the very same ``str`` goes to every viewer that asked for the same fields; that is the only CPU
work the hub does on the event loop.

Binary viewers (``?format=binary``) get the same frame as one binary message instead, built once
per frame and shared the same way (see ``binary_message`` for the layout).
"""

from __future__ import annotations

import base64
import struct
import time
from typing import Any

import orjson

from vigil.common.v1 import common_pb2 as cpb
from vigil.core.errors import InvalidInput
from vigil.detector.v1 import detector_service_pb2 as dpb

# Optional fields a viewer may ask for with ``?extras=a,b``; without them a frame message is
# exactly {"type", "data", "timestamp"}, as the original protocol defines it.
EXTRAS = frozenset({"detections", "sequence", "dropped", "latency"})


def parse_extras(raw: str | None) -> frozenset[str]:
    """Turn ``"detections,sequence"`` into a set of known extras; raise ``InvalidInput`` if any
    name is unknown, so a typo is reported rather than silently ignored."""
    if not raw:
        return frozenset()
    names = frozenset(name.strip() for name in raw.split(",") if name.strip())
    unknown = names - EXTRAS
    if unknown:
        raise InvalidInput(
            f"unknown extras {', '.join(sorted(unknown))}; known: {', '.join(sorted(EXTRAS))}"
        )
    return names


def error_message(code: str, message: str) -> str:
    return orjson.dumps({"type": "error", "code": code, "message": message}).decode()


def capture_seconds(frame: dpb.Frame, fallback: float) -> float:
    ts = frame.capture_time
    if ts.seconds == 0 and ts.nanos == 0:
        return fallback
    return ts.seconds + ts.nanos / 1e9


def encode_frame(frame: dpb.Frame, data: str, extras: frozenset[str], received: float) -> str:
    """The message for one frame; ``data`` is the frame's JPEG in base64, computed once."""
    return orjson.dumps(_frame_fields(frame, extras, received, data=data)).decode()


# Binary frame messages (``?format=binary``), all integers big-endian:
#   bytes 0-3      N, the length of the header (unsigned 32-bit)
#   bytes 4-(4+N)  the header: UTF-8 JSON {"type": "frame", "timestamp": <capture time, s>,
#                  "sequence": <source frame number>} plus the fields ``?extras=`` asks for
#                  (latency_ms, inference_ms, width, height, detections, dropped)
#   the rest       the JPEG, exactly as the detector sent it
# Errors still arrive as JSON text messages, so a client tells them apart by message type.
HEADER_LENGTH = struct.Struct(">I")


def binary_message(header: dict[str, Any], jpeg: bytes) -> bytes:
    """Pack one binary frame message (see the layout above)."""
    encoded = orjson.dumps(header)
    return b"".join((HEADER_LENGTH.pack(len(encoded)), encoded, jpeg))


def parse_binary_message(message: bytes) -> tuple[dict[str, Any], bytes]:
    """Split a binary frame message into its header and JPEG (for clients and tests)."""
    (length,) = HEADER_LENGTH.unpack_from(message)
    header: dict[str, Any] = orjson.loads(message[4 : 4 + length])
    return header, message[4 + length :]


def _frame_fields(
    frame: dpb.Frame, extras: frozenset[str], received: float, *, data: str | None
) -> dict[str, Any]:
    timestamp = capture_seconds(frame, received)
    msg: dict[str, Any] = {"type": "frame"}
    if data is not None:
        msg["data"] = data
    msg["timestamp"] = timestamp
    if "sequence" in extras or data is None:
        msg["sequence"] = frame.sequence
    if "latency" in extras:
        # Capture to arrival at the bridge; the browser adds its own leg from ``timestamp``.
        msg["latency_ms"] = round((received - timestamp) * 1000.0, 3)
        msg["inference_ms"] = round(frame.inference_ms, 3)
    if "detections" in extras:
        msg["width"] = frame.width
        msg["height"] = frame.height
        msg["detections"] = [_detection(d) for d in frame.detections]
    return msg


def _detection(d: cpb.Detection) -> dict[str, Any]:
    out: dict[str, Any] = {
        "class_name": d.class_name,
        "class_id": d.class_id,
        "confidence": round(d.confidence, 4),
        "box": {
            "x_min": round(d.box.x_min, 1),
            "y_min": round(d.box.y_min, 1),
            "x_max": round(d.box.x_max, 1),
            "y_max": round(d.box.y_max, 1),
        },
        "is_weapon": d.is_weapon,
        "model": d.model,
    }
    if d.HasField("track_id"):
        out["track_id"] = d.track_id
    return out


class EncodedFrame:
    """One frame's messages, each variant built at most once and shared by every viewer."""

    def __init__(self, frame: dpb.Frame) -> None:
        self.frame = frame
        self.received = time.time()
        self._data: str | None = None
        self._texts: dict[frozenset[str], str] = {}
        self._binaries: dict[frozenset[str], tuple[dict[str, Any], bytes]] = {}

    def text(self, extras: frozenset[str]) -> str:
        key = extras - {"dropped"}
        text = self._texts.get(key)
        if text is None:
            if self._data is None:
                self._data = base64.b64encode(self.frame.jpeg).decode("ascii")
            text = self._texts[key] = encode_frame(self.frame, self._data, key, self.received)
        return text

    def binary(self, extras: frozenset[str]) -> tuple[dict[str, Any], bytes]:
        key = extras - {"dropped"}
        packed = self._binaries.get(key)
        if packed is None:
            header = _frame_fields(self.frame, key, self.received, data=None)
            packed = self._binaries[key] = (header, binary_message(header, self.frame.jpeg))
        return packed

    def message(self, extras: frozenset[str], binary: bool, dropped: int) -> str | bytes:
        """The message for a viewer asking for ``extras``, in binary or as JSON text;
        ``dropped`` is that viewer's own count, sent when it asks for it."""
        if not binary:
            return self.text_with(extras, dropped)
        header, packed = self.binary(extras)
        if "dropped" in extras:
            # Per-viewer figure: a header of its own, the JPEG copied once more (a memcpy).
            return binary_message({**header, "dropped": dropped}, self.frame.jpeg)
        return packed

    def text_with(self, extras: frozenset[str], dropped: int) -> str:
        text = self.text(extras)
        if "dropped" in extras:
            # Per-viewer figure: spliced onto the shared encoding instead of re-encoding the JPEG.
            text = f'{text[:-1]},"dropped":{dropped}}}'
        return text
