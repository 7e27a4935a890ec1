"""Vigil's errors, and the one table that says how each travels: gRPC, HTTP, WebSocket, retries.

Every error a user may see has a code (``vigil.common.v1.ErrorCode``, named without its
``ERROR_CODE_`` prefix) and one row in ``ERRORS``: its gRPC status, HTTP status, WebSocket close
code and, when retrying the same request later can help, the seconds to wait first. Services raise
``VigilError`` subclasses; ``vigil.core.serving`` turns one into a gRPC rich status
(``rich_status``: ``google.rpc.Status`` with ``ErrorInfo``, ``RetryInfo``, ``BadRequest``), and
``from_rpc_error`` turns a failed call back into the same ``VigilError`` on the other side, so the
SDK, the bridge and the tests read one contract. Messages must never contain secrets: they go to
users.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import NoReturn

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

# ``ErrorInfo.domain`` of every Vigil error: a status from anything else is not ours to read.
DOMAIN = "vigil.dev"
# Where gRPC carries a ``google.rpc.Status`` (grpcio-status reads and writes the same key).
DETAILS_KEY = "grpc-status-details-bin"

# WebSocket close codes (RFC 6455): a refusal the client must fix is a policy violation, a message
# too big to take is 1009, a failure a retry can get past is "try again later", a cancelled call
# is "going away" and any other failure of ours is a server error.
WS_POLICY = 1008
WS_TOO_BIG = 1009
WS_SERVER_ERROR = 1011
WS_TRY_AGAIN = 1013
WS_GOING_AWAY = 1001

_S = grpc.StatusCode
# Seconds a client waits before retrying a retryable error (``Retry-After``, ``RetryInfo``).
RETRY_AFTER_S = 2


@dataclass(frozen=True)
class Contract:
    """How one error code travels. ``retry_after_s`` is None when retrying as-is cannot help."""

    status: grpc.StatusCode
    http: int
    ws_close: int
    retry_after_s: int | None = None

    @property
    def retryable(self) -> bool:
        return self.retry_after_s is not None

    @property
    def final(self) -> bool:
        """The request is refused as it is: no later attempt of it can succeed."""
        return self.ws_close in (WS_POLICY, WS_TOO_BIG)


# The one table. Decisions where the surfaces used to disagree:
# - DEADLINE_EXCEEDED is retryable (the SDK said so, the bridge did not): a call that ran out of
#   time says nothing against the request, and the same call may finish on a less busy service.
#   Its WebSocket close code follows, 1011 -> 1013, as for every retryable code.
# - TOO_LARGE closed WebSockets with 1013 ("try again later", from its RESOURCE_EXHAUSTED status)
#   although the same message will always be too large: 1009 (message too big) instead.
# - INSUFFICIENT_STORAGE answered HTTP 429 (from RESOURCE_EXHAUSTED) and was not retryable:
#   507 Insufficient Storage says what it is.
# - UNIMPLEMENTED closed WebSockets with 1011 (server error), yet the frame hub and the session
#   follower both treated it as final, like every other refusal: 1008, as refusals close.
# Retryable rows close WebSockets with 1013, refusals of the request as it is with 1008 or 1009
# (``Contract.final``: a stream is not followed again after one), other failures with 1011. The
# SDK retries a gRPC status only when every code with that status is retryable
# (``retryable_statuses``), so UNAVAILABLE is retried and RESOURCE_EXHAUSTED (TOO_LARGE as well as
# OVERLOADED) is not.
ERRORS: MappingProxyType[str, Contract] = MappingProxyType(
    {
        "INTERNAL": Contract(_S.INTERNAL, 500, WS_SERVER_ERROR),
        "INVALID_ARGUMENT": Contract(_S.INVALID_ARGUMENT, 400, WS_POLICY),
        "NOT_FOUND": Contract(_S.NOT_FOUND, 404, WS_POLICY),
        "ALREADY_EXISTS": Contract(_S.ALREADY_EXISTS, 409, WS_POLICY),
        "FAILED_PRECONDITION": Contract(_S.FAILED_PRECONDITION, 409, WS_POLICY),
        "TOO_LARGE": Contract(_S.RESOURCE_EXHAUSTED, 413, WS_TOO_BIG),
        "OVERLOADED": Contract(_S.RESOURCE_EXHAUSTED, 429, WS_TRY_AGAIN, RETRY_AFTER_S),
        "UNAVAILABLE": Contract(_S.UNAVAILABLE, 503, WS_TRY_AGAIN, RETRY_AFTER_S),
        "MODEL_NOT_CONFIGURED": Contract(_S.FAILED_PRECONDITION, 409, WS_POLICY),
        "DEADLINE_EXCEEDED": Contract(_S.DEADLINE_EXCEEDED, 504, WS_TRY_AGAIN, RETRY_AFTER_S),
        "IDLE_TIMEOUT": Contract(_S.DEADLINE_EXCEEDED, 408, WS_POLICY),
        "CANCELLED": Contract(_S.CANCELLED, 499, WS_GOING_AWAY),
        "UNAUTHENTICATED": Contract(_S.UNAUTHENTICATED, 401, WS_POLICY),
        "PERMISSION_DENIED": Contract(_S.PERMISSION_DENIED, 403, WS_POLICY),
        "UNIMPLEMENTED": Contract(_S.UNIMPLEMENTED, 501, WS_POLICY),
        "INSUFFICIENT_STORAGE": Contract(_S.RESOURCE_EXHAUSTED, 507, WS_SERVER_ERROR),
        "FRAMES_NOT_READY": Contract(_S.FAILED_PRECONDITION, 409, WS_POLICY),
        # A job's own failures (``vigil.common.v1.Error`` in its events).
        "VIDEO_MISSING": Contract(_S.INTERNAL, 500, WS_SERVER_ERROR),
        "SAMPLING_FAILED": Contract(_S.INTERNAL, 500, WS_SERVER_ERROR),
        "DECODER_CRASHED": Contract(_S.INTERNAL, 500, WS_SERVER_ERROR),
        "DECODER_TIMEOUT": Contract(_S.INTERNAL, 500, WS_SERVER_ERROR),
        "INTERRUPTED": Contract(_S.UNAVAILABLE, 503, WS_TRY_AGAIN, RETRY_AFTER_S),
        # One frame's detection (``Frame.detection_error``).
        "INVALID_IMAGE": Contract(_S.INVALID_ARGUMENT, 400, WS_POLICY),
        "DETECTION_FAILED": Contract(_S.UNAVAILABLE, 503, WS_TRY_AGAIN, RETRY_AFTER_S),
        # The bridge's live feeds and session messages.
        "SOURCE_FAILED": Contract(_S.FAILED_PRECONDITION, 409, WS_SERVER_ERROR),
        "SOURCE_RECONNECTING": Contract(_S.UNAVAILABLE, 503, WS_TRY_AGAIN, RETRY_AFTER_S),
        "INVALID_JSON": Contract(_S.INVALID_ARGUMENT, 400, WS_POLICY),
        "INVALID_MESSAGE": Contract(_S.INVALID_ARGUMENT, 400, WS_POLICY),
        "UNKNOWN_EVENT": Contract(_S.INVALID_ARGUMENT, 400, WS_POLICY),
        "NO_SESSION": Contract(_S.FAILED_PRECONDITION, 409, WS_POLICY),
        "CHAT_IN_PROGRESS": Contract(_S.FAILED_PRECONDITION, 409, WS_POLICY),
        "RATE_LIMITED": Contract(_S.RESOURCE_EXHAUSTED, 429, WS_POLICY),
        # Refusals of the bridge's HTTP layer itself.
        "METHOD_NOT_ALLOWED": Contract(_S.UNIMPLEMENTED, 405, WS_POLICY),
        "LENGTH_REQUIRED": Contract(_S.INVALID_ARGUMENT, 411, WS_POLICY),
        "UNSUPPORTED_MEDIA_TYPE": Contract(_S.INVALID_ARGUMENT, 415, WS_POLICY),
    }
)


def retryable_statuses() -> tuple[grpc.StatusCode, ...]:
    """gRPC statuses worth retrying whatever the error: every code that has them is retryable."""
    statuses = {c.status for c in ERRORS.values()}
    return tuple(
        sorted(
            (s for s in statuses if all(c.retryable for c in ERRORS.values() if c.status == s)),
            key=lambda s: s.name,
        )
    )


class VigilError(Exception):
    """Base of every error a user may see. ``code`` is stable and machine-readable; everything
    else (status, HTTP status, close code, retryability) comes from its row in ``ERRORS``.
    ``field`` names the request field at fault, when there is one."""

    code = "INTERNAL"

    def __init_subclass__(cls) -> None:
        # A new error class without a row would travel with another code's contract: refuse it.
        super().__init_subclass__()
        if cls.code not in ERRORS:
            raise TypeError(f"{cls.__name__}.code {cls.code!r} has no row in ERRORS")

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        field: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        # Travels as ``ErrorInfo.metadata`` (for example the replica that owns a source).
        self.metadata: Mapping[str, str] = dict(metadata or {})
        if code is not None:
            self.code = code

    @property
    def contract(self) -> Contract:
        # A code this version does not know (a newer service's) travels as its class's.
        return ERRORS.get(self.code) or ERRORS[type(self).code]

    @property
    def status(self) -> grpc.StatusCode:
        return self.contract.status

    @property
    def http_status(self) -> int:
        return self.contract.http

    @property
    def ws_close_code(self) -> int:
        return self.contract.ws_close

    @property
    def retryable(self) -> bool:
        return self.contract.retryable

    @property
    def retry_after_s(self) -> int | None:
        return self.contract.retry_after_s


class InvalidInput(VigilError):
    code = "INVALID_ARGUMENT"


class NotFound(VigilError):
    code = "NOT_FOUND"


class AlreadyExists(VigilError):
    code = "ALREADY_EXISTS"


class FailedPrecondition(VigilError):
    code = "FAILED_PRECONDITION"


class TooLarge(VigilError):
    code = "TOO_LARGE"


class Overloaded(VigilError):
    code = "OVERLOADED"


class Unavailable(VigilError):
    code = "UNAVAILABLE"


class ModelNotConfigured(VigilError):
    code = "MODEL_NOT_CONFIGURED"


class DeadlineExceeded(VigilError):
    code = "DEADLINE_EXCEEDED"


class IdleTimeout(VigilError):
    """A client stopped sending in the middle of a request (an upload that went quiet)."""

    code = "IDLE_TIMEOUT"


class Cancelled(VigilError):
    code = "CANCELLED"


class Unauthenticated(VigilError):
    code = "UNAUTHENTICATED"


class PermissionDenied(VigilError):
    code = "PERMISSION_DENIED"


class Unimplemented(VigilError):
    code = "UNIMPLEMENTED"


_CLASSES: tuple[type[VigilError], ...] = (
    InvalidInput,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    TooLarge,
    Overloaded,
    Unavailable,
    ModelNotConfigured,
    DeadlineExceeded,
    IdleTimeout,
    Cancelled,
    Unauthenticated,
    PermissionDenied,
    Unimplemented,
)
_BY_CODE: dict[str, type[VigilError]] = {cls.code: cls for cls in _CLASSES}
# A code without a class of its own comes back as the class of its status' general code.
_GENERAL: dict[grpc.StatusCode, type[VigilError]] = {
    # Reversed, so the first class of a shared status wins (FailedPrecondition, DeadlineExceeded).
    **{ERRORS[cls.code].status: cls for cls in reversed(_CLASSES)},
    _S.OUT_OF_RANGE: InvalidInput,
    _S.RESOURCE_EXHAUSTED: Overloaded,
}


def _error_class(code: str, status: grpc.StatusCode) -> type[VigilError]:
    return _BY_CODE.get(code) or _GENERAL.get(status, VigilError)


def rich_status(error: VigilError) -> status_pb2.Status:
    """The ``google.rpc.Status`` a failed call carries for ``error``.

    The message keeps the ``"CODE: "`` prefix released clients (vigil 0.1) read the code from;
    nothing in this version parses it: the code travels as ``ErrorInfo.reason``.
    """
    info = error_details_pb2.ErrorInfo(reason=error.code, domain=DOMAIN, metadata=error.metadata)
    details: list[Message] = [info]
    if error.retry_after_s is not None:
        delay = duration_pb2.Duration(seconds=error.retry_after_s)
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    if error.field is not None:
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=error.field, description=error.message
        )
        details.append(error_details_pb2.BadRequest(field_violations=[violation]))
    packed = []
    for detail in details:
        item = any_pb2.Any()
        item.Pack(detail)
        packed.append(item)
    return status_pb2.Status(
        code=error.status.value[0], message=f"{error.code}: {error.message}", details=packed
    )


async def abort_with(
    context: grpc.aio.ServicerContext[object, object], error: VigilError
) -> NoReturn:
    """End the current RPC with ``error`` as a rich status (what raising it does as well, through
    ``vigil.core.serving``'s interceptor)."""
    status = rich_status(error)
    trailer = ((DETAILS_KEY, status.SerializeToString()),)
    await context.abort(error.status, status.message, trailer)
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


def status_of(error: grpc.RpcError) -> status_pb2.Status | None:
    """The rich status of a failed call, when a Vigil service sent one."""
    call = _call(error)
    if call is None:
        return None
    for key, value in _pairs(call.trailing_metadata()):
        if key == DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            if status.code == _status(error).value[0] and _info(status) is not None:
                return status
    return None


def from_rpc_error(error: grpc.RpcError) -> VigilError:
    """The ``VigilError`` a failed call stands for; raise it ``from error`` to keep the cause.

    A Vigil service's rich status names the code (``ErrorInfo.reason``); gRPC's own failures (a
    refused connection, a message over the size limit, an expired deadline) carry none and are
    told by their status.
    """
    status = _status(error)
    rich = status_of(error)
    info = _info(rich) if rich is not None else None
    if rich is None or info is None:
        call = _call(error)
        details = (call.details() if call is not None else None) or ""
        cls: type[VigilError] = _GENERAL.get(status, VigilError)
        # gRPC's own size limit says so only in prose.
        if status == _S.RESOURCE_EXHAUSTED and "larger than max" in details:
            cls = TooLarge
        return cls(details or status.name)
    message = rich.message.removeprefix(f"{info.reason}: ")
    field = next((v.field for r in _bad_requests(rich) for v in r.field_violations), None)
    metadata = dict(info.metadata)
    return _error_class(info.reason, status)(
        message, code=info.reason, field=field, metadata=metadata
    )


def _call(error: grpc.RpcError) -> grpc.Call | grpc.aio.AioRpcError | None:
    # gRPC raises errors that are calls as well (sync) or carry the same accessors (aio).
    return error if isinstance(error, grpc.Call | grpc.aio.AioRpcError) else None


def _status(error: grpc.RpcError) -> grpc.StatusCode:
    call = _call(error)
    code = call.code() if call is not None else None
    return code if isinstance(code, grpc.StatusCode) else _S.UNKNOWN


def _pairs(metadata: object) -> Iterable[tuple[str, object]]:
    for item in metadata or ():  # type: ignore[attr-defined]
        key, value = item
        yield str(key), value


def _info(status: status_pb2.Status) -> error_details_pb2.ErrorInfo | None:
    for item in status.details:
        info = error_details_pb2.ErrorInfo()
        if item.Unpack(info) and info.domain == DOMAIN:
            return info
    return None


def _bad_requests(status: status_pb2.Status) -> list[error_details_pb2.BadRequest]:
    found = []
    for item in status.details:
        request = error_details_pb2.BadRequest()
        if item.Unpack(request):
            found.append(request)
    return found
