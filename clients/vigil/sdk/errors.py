"""gRPC errors back into Vigil's domain errors, so SDK callers catch ``vigil.core.errors`` classes.

Services end a failed call with a rich status whose ``ErrorInfo.reason`` is the error's code (see
``vigil.core.errors``); ``from_rpc_error`` reads it, and falls back to the status for gRPC's own
errors (a refused connection, a message over the size limit). The classes live in
``vigil.core.errors``; the ones only a client meets (DeadlineExceeded and friends) are re-exported
here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import grpc

from vigil.core.errors import (
    Cancelled,
    DeadlineExceeded,
    PermissionDenied,
    Unauthenticated,
    Unimplemented,
    from_rpc_error,
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


@contextlib.contextmanager
def mapped_errors() -> Iterator[None]:
    """Raise ``from_rpc_error`` of any gRPC error in the block, with the gRPC error as cause."""
    try:
        yield
    except grpc.RpcError as exc:
        raise from_rpc_error(exc) from exc
