"""How failures reach clients: one JSON shape, and every status, close code, retryability and
``Retry-After`` from ``vigil.core.errors``' one table.

Every error response is ``{"code": "NOT_FOUND", "message": "no job 'x'"}`` (plus ``details``
for malformed requests, and ``"retryable": true`` with a ``Retry-After`` header when waiting may
help). A backend's failure, whether a raw ``grpc.RpcError`` or the ``VigilError`` the SDK raises
for it, becomes a ``BackendError`` in ``backend()`` (``translate``), which the HTTP handler, the
frame hub's WebSockets and the session events all read the same way. Bad input is 400
(INVALID_ARGUMENT); anything unexpected is a plain 500 with no stack trace (the trace goes to the
log).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from vigil.core.errors import (
    ERRORS,
    InvalidInput,
    VigilError,
    from_rpc_error,
    status_of,
)

log = logging.getLogger(__name__)

# Codes for statuses the bridge answers itself.
_HTTP_CODES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    408: "IDLE_TIMEOUT",
    411: "LENGTH_REQUIRED",
    413: "TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "TOO_MANY_REQUESTS",
}


class ErrorBody(BaseModel):
    """The body of every error response."""

    code: str = Field(description="Stable machine-readable code.", examples=["NOT_FOUND"])
    message: str = Field(description="What went wrong, for people.", examples=["no job 'abc'"])
    details: list[dict[str, Any]] | None = Field(
        default=None, description="Per-field problems of a malformed request."
    )
    retryable: bool | None = Field(
        default=None,
        description="True when the same request may well succeed later (a full queue, a backend "
        "restarting); the response then has a Retry-After header in seconds.",
    )


class BackendError(Exception):
    """A call to a backend failed; ``error`` (its code and message) is safe to show users."""

    def __init__(self, error: VigilError) -> None:
        super().__init__(error.message)
        self.error = error

    @property
    def code(self) -> str:
        return self.error.code

    @property
    def message(self) -> str:
        return self.error.message

    @property
    def status(self) -> grpc.StatusCode:
        return self.error.status

    @property
    def http_status(self) -> int:
        return self.error.http_status

    @property
    def ws_close_code(self) -> int:
        return self.error.ws_close_code

    @property
    def retryable(self) -> bool:
        return self.error.retryable

    @property
    def final(self) -> bool:
        """Another attempt at the same request cannot help, so a stream is not followed again."""
        return self.error.contract.final


def translate(error: grpc.RpcError | VigilError, backend: str) -> BackendError:
    """A backend's own error (a Vigil rich status) passes through, as it is written for users;
    gRPC's own failures (raw transport details: addresses, library names) are told in our words
    and their details stay in the log. Takes what the raw stubs raise and what the SDK raises."""
    rpc = error if isinstance(error, grpc.RpcError) else error.__cause__
    vigil = error if isinstance(error, VigilError) else from_rpc_error(error)
    if not isinstance(rpc, grpc.RpcError) or status_of(rpc) is not None:
        return BackendError(vigil)
    cls, status = type(vigil), vigil.status
    if status == grpc.StatusCode.UNAVAILABLE:
        message = f"the {backend} is unavailable; try again shortly"
    elif status == grpc.StatusCode.DEADLINE_EXCEEDED:
        message = f"the {backend} did not answer in time"
    elif status == grpc.StatusCode.UNIMPLEMENTED:
        message = f"the {backend} does not offer this yet"
    else:
        message = f"the {backend} refused the request ({status.name})"
    log.info("%s call failed: %s %s", backend, vigil.code, vigil.message)
    return BackendError(cls(message, code=vigil.code))


@contextlib.contextmanager
def backend(name: str) -> Iterator[None]:
    """Turn a backend's failure inside the block into a ``BackendError`` naming ``name``."""
    try:
        yield
    except (grpc.RpcError, VigilError) as e:
        raise translate(e, name) from None


def error_response(
    status: int, code: str, message: str, *, retry_after_s: int | None = None, **extra: Any
) -> JSONResponse:
    retryable = retry_after_s is not None
    body = ErrorBody(code=code, message=message, retryable=retryable or None, **extra)
    headers = {"Retry-After": str(retry_after_s)} if retryable else None
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)


def vigil_response(error: VigilError) -> JSONResponse:
    """The response for ``error``: status, ``retryable`` and ``Retry-After`` from its row."""
    return error_response(
        error.http_status, error.code, error.message, retry_after_s=error.retry_after_s
    )


async def _backend_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BackendError)
    return vigil_response(exc.error)


async def _vigil_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, VigilError)
    return vigil_response(exc)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [
        {"loc": list(e.get("loc", ())), "message": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    first = details[0] if details else {"loc": [], "message": "invalid request"}
    where = ".".join(str(part) for part in first["loc"])
    message = f"{where}: {first['message']}" if where else str(first["message"])
    status = ERRORS[InvalidInput.code].http
    return error_response(status, InvalidInput.code, message, details=details)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, f"HTTP_{exc.status_code}")
    response = error_response(exc.status_code, code, str(exc.detail))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "INTERNAL", "internal error; see the bridge's log")


def install(app: FastAPI) -> None:
    """Register the handlers; the single place where errors become HTTP responses."""
    app.add_exception_handler(BackendError, _backend_error)
    app.add_exception_handler(VigilError, _vigil_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Malformed request."},
    401: {"model": ErrorBody, "description": "Missing or wrong bearer token."},
    503: {"model": ErrorBody, "description": "The backend is unavailable."},
}
