"""Values shared by both services: detections, errors, times and enum names."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from vigil.common.v1 import common_pb2

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

D = TypeVar("D", bound="DataclassInstance")


def from_fields(cls: type[D], message: Message, **computed: Any) -> D:
    """A ``cls`` whose fields are ``message``'s fields of the same name, but for those given in
    ``computed`` (times, enums, nested and repeated fields, ``proto``), which are taken as given.
    """
    names = (f.name for f in dataclasses.fields(cls) if f.name not in computed)
    return cls(**{name: getattr(message, name) for name in names}, **computed)


def enum_name(name_of: Callable[[Any], str], value: int, prefix: str) -> str:
    """``SOURCE_STATE_LIVE`` -> ``live`` (``name_of`` is the enum's ``Name``); values newer than
    this SDK read as ``unknown``."""
    try:
        name = name_of(value)
    except ValueError:
        return "unknown"
    return name.removeprefix(prefix).lower()


def seconds(ts: Timestamp) -> float:
    return ts.seconds + ts.nanos / 1e9


def optional_seconds(message: Message, name: str) -> float | None:
    """A message's timestamp field in seconds since the epoch, or None when it was never set."""
    return seconds(getattr(message, name)) if message.HasField(name) else None


def timestamp(at: float | None = None) -> Timestamp:
    """A Timestamp for ``at`` seconds since the epoch (now when None)."""
    ns = time.time_ns() if at is None else round(at * 1e9)
    return Timestamp(seconds=ns // 1_000_000_000, nanos=ns % 1_000_000_000)


@dataclass(frozen=True)
class Box:
    """Pixel coordinates, origin top-left, right and bottom edges exclusive."""

    x_min: float
    y_min: float
    x_max: float
    y_max: float


@dataclass(frozen=True)
class Detection:
    class_name: str
    class_id: int
    confidence: float
    box: Box
    is_weapon: bool
    model: str
    track_id: int | None = None
    proto: common_pb2.Detection = field(
        default_factory=common_pb2.Detection, repr=False, compare=False
    )

    @classmethod
    def from_proto(cls, message: common_pb2.Detection) -> Detection:
        box = message.box
        return from_fields(
            cls,
            message,
            box=Box(box.x_min, box.y_min, box.x_max, box.y_max),
            track_id=message.track_id if message.HasField("track_id") else None,
            proto=message,
        )


def detections(messages: Iterable[common_pb2.Detection]) -> tuple[Detection, ...]:
    return tuple(Detection.from_proto(m) for m in messages)


@dataclass(frozen=True)
class ErrorInfo:
    """Why one frame, one operation or one job failed (``vigil.common.v1.Error``)."""

    code: str
    message: str
    retryable: bool = False

    @classmethod
    def from_proto(cls, message: common_pb2.Error) -> ErrorInfo:
        return cls(code=message.code, message=message.message, retryable=message.retryable)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def error_of(message: Message, name: str) -> ErrorInfo | None:
    """The Error field ``name`` of ``message``, or None when unset."""
    return ErrorInfo.from_proto(getattr(message, name)) if message.HasField(name) else None


T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing; pass ``next_page_token`` back for the next one (empty: no more)."""

    items: tuple[T, ...]
    next_page_token: str
