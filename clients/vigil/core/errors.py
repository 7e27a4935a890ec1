"""Vigil's errors, and the one table that maps them to gRPC, HTTP and WebSocket codes.

Services raise ``VigilError`` subclasses; the gRPC layer turns them into a status with
``abort_with``; the bridge turns a gRPC status into an HTTP status or a WebSocket close code with
``http_status`` and ``ws_close_code``. Messages must never contain secrets: they go to users.
"""

from __future__ import annotations

from typing import NoReturn

import grpc


class VigilError(Exception):
    """Base of every error a user may see. ``code`` is stable and machine-readable."""

    status = grpc.StatusCode.INTERNAL
    code = "INTERNAL"
    retryable = False

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidInput(VigilError):
    status = grpc.StatusCode.INVALID_ARGUMENT
    code = "INVALID_ARGUMENT"


class NotFound(VigilError):
    status = grpc.StatusCode.NOT_FOUND
    code = "NOT_FOUND"


class AlreadyExists(VigilError):
    status = grpc.StatusCode.ALREADY_EXISTS
    code = "ALREADY_EXISTS"


class FailedPrecondition(VigilError):
    status = grpc.StatusCode.FAILED_PRECONDITION
    code = "FAILED_PRECONDITION"


class TooLarge(VigilError):
    status = grpc.StatusCode.RESOURCE_EXHAUSTED
    code = "TOO_LARGE"


class Overloaded(VigilError):
    status = grpc.StatusCode.RESOURCE_EXHAUSTED
    code = "OVERLOADED"
    retryable = True


class Unavailable(VigilError):
    status = grpc.StatusCode.UNAVAILABLE
    code = "UNAVAILABLE"
    retryable = True


class ModelNotConfigured(VigilError):
    status = grpc.StatusCode.FAILED_PRECONDITION
    code = "MODEL_NOT_CONFIGURED"


class DeadlineExceeded(VigilError):
    status = grpc.StatusCode.DEADLINE_EXCEEDED
    code = "DEADLINE_EXCEEDED"
    retryable = True


class IdleTimeout(VigilError):
    """A client stopped sending in the middle of a request (an upload that went quiet)."""

    status = grpc.StatusCode.DEADLINE_EXCEEDED
    code = "IDLE_TIMEOUT"


class Cancelled(VigilError):
    status = grpc.StatusCode.CANCELLED
    code = "CANCELLED"


class Unauthenticated(VigilError):
    status = grpc.StatusCode.UNAUTHENTICATED
    code = "UNAUTHENTICATED"


class PermissionDenied(VigilError):
    status = grpc.StatusCode.PERMISSION_DENIED
    code = "PERMISSION_DENIED"


class Unimplemented(VigilError):
    status = grpc.StatusCode.UNIMPLEMENTED
    code = "UNIMPLEMENTED"


# gRPC status -> (HTTP status, WebSocket close code).
# Close codes: 1008 policy violation, 1011 server error, 1013 try again later.
_STATUS_TABLE: dict[grpc.StatusCode, tuple[int, int]] = {
    grpc.StatusCode.OK: (200, 1000),
    grpc.StatusCode.CANCELLED: (499, 1001),
    grpc.StatusCode.INVALID_ARGUMENT: (400, 1008),
    grpc.StatusCode.OUT_OF_RANGE: (400, 1008),
    grpc.StatusCode.NOT_FOUND: (404, 1008),
    grpc.StatusCode.ALREADY_EXISTS: (409, 1008),
    grpc.StatusCode.FAILED_PRECONDITION: (409, 1008),
    grpc.StatusCode.ABORTED: (409, 1011),
    grpc.StatusCode.PERMISSION_DENIED: (403, 1008),
    grpc.StatusCode.UNAUTHENTICATED: (401, 1008),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, 1013),
    grpc.StatusCode.UNAVAILABLE: (503, 1013),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, 1011),
    grpc.StatusCode.UNIMPLEMENTED: (501, 1011),
    grpc.StatusCode.UNKNOWN: (500, 1011),
    grpc.StatusCode.INTERNAL: (500, 1011),
    grpc.StatusCode.DATA_LOSS: (500, 1011),
}


# Where one gRPC status covers errors that HTTP tells apart, the error code decides.
_HTTP_BY_CODE: dict[str, int] = {"TOO_LARGE": 413, "IDLE_TIMEOUT": 408}


def http_status(status: grpc.StatusCode, code: str | None = None) -> int:
    if code is not None and code in _HTTP_BY_CODE:
        return _HTTP_BY_CODE[code]
    return _STATUS_TABLE.get(status, (500, 1011))[0]


def ws_close_code(status: grpc.StatusCode) -> int:
    return _STATUS_TABLE.get(status, (500, 1011))[1]


async def abort_with(
    context: grpc.aio.ServicerContext[object, object], error: VigilError
) -> NoReturn:
    """End the current RPC with the error's gRPC status and message."""
    await context.abort(error.status, f"{error.code}: {error.message}")
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover
