"""gRPC errors back into Vigil's domain errors, so SDK callers catch ``vigil.core.errors`` classes.

Services end a call with ``abort_with``, which writes ``"CODE: message"`` as the status details;
the code is the more specific key (``MODEL_NOT_CONFIGURED`` and ``FAILED_PRECONDITION`` share a
status), and the status decides when the details carry no code (gRPC's own errors, such as a
refused connection). The classes themselves live in ``vigil.core.errors``; the ones only a client
meets (DeadlineExceeded and friends) are re-exported here.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import grpc

from vigil.core.errors import (
    AlreadyExists,
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidInput,
    ModelNotConfigured,
    NotFound,
    Overloaded,
    PermissionDenied,
    TooLarge,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    VigilError,
)

__all__ = [
    "Cancelled",
    "DeadlineExceeded",
    "PermissionDenied",
    "Unauthenticated",
    "Unimplemented",
    "from_rpc_error",
    "mapped_errors",
]

_BY_CODE: dict[str, type[VigilError]] = {
    "MODEL_NOT_CONFIGURED": ModelNotConfigured,
    "TOO_LARGE": TooLarge,
    "OVERLOADED": Overloaded,
}

_BY_STATUS: dict[grpc.StatusCode, type[VigilError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidInput,
    grpc.StatusCode.OUT_OF_RANGE: InvalidInput,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: Overloaded,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
}

_CODE_PREFIX = re.compile(r"([A-Z][A-Z0-9_]*): (.*)", re.DOTALL)


def from_rpc_error(error: grpc.RpcError) -> VigilError:
    """The domain error for a failed call; the gRPC error stays reachable as ``__cause__``
    when raised with ``raise from_rpc_error(exc) from exc``."""
    status = error.code()
    details = error.details() or ""
    match = _CODE_PREFIX.fullmatch(details)
    code, message = (match.group(1), match.group(2)) if match else (None, details)
    cls = _BY_CODE.get(code or "")
    if cls is None or cls.status != status:
        cls = _BY_STATUS.get(status, VigilError)
        # gRPC's own size limit says so only in prose.
        if status == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in details:
            cls = TooLarge
    result = cls(message or status.name, code=code)
    # Statuses with no class of their own still report the status they came with.
    result.status = status
    if cls is VigilError and code is None:
        result.code = status.name
    return result


@contextlib.contextmanager
def mapped_errors() -> Iterator[None]:
    """Raise ``from_rpc_error`` of any gRPC error in the block, with the gRPC error as cause."""
    try:
        yield
    except grpc.RpcError as exc:
        raise from_rpc_error(exc) from exc
