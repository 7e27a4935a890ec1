"""How failures reach HTTP clients: one JSON shape, statuses from ``vigil.core.errors``' one table.

Every error response is ``{"code": "NOT_FOUND", "message": "no job 'x'"}`` (plus ``details``
for malformed requests). gRPC failures become ``BackendError`` in ``backend()`` and their HTTP
status comes from ``vigil.core.errors.http_status``; bad input is 400 (INVALID_ARGUMENT); anything
unexpected is a plain 500 with no stack trace (the trace goes to the log).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from vigil.core.errors import VigilError, http_status, ws_close_code

log = logging.getLogger(__name__)

# Vigil services put "CODE: message" in a status's details (``vigil.core.errors.abort_with``).
_VIGIL_DETAILS = re.compile(r"([A-Z][A-Z0-9_]*): (.+)", re.DOTALL)
# Seconds a client is told to wait (``Retry-After``) before retrying a retryable failure.
RETRY_AFTER_S = 2
# Error codes of the services that mean "busy now, try again" (``vigil.core.errors.Overloaded``).
_RETRYABLE_CODES = frozenset({"OVERLOADED"})
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
    """A gRPC call to a backend failed; ``code`` and ``message`` are safe to show users."""

    def __init__(self, status: grpc.StatusCode, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return http_status(self.status, self.code)

    @property
    def ws_close_code(self) -> int:
        return ws_close_code(self.status)


def describe(error: grpc.aio.AioRpcError | VigilError, backend: str) -> BackendError:
    """A backend's own "CODE: message" passes through (it is written for users); raw transport
    details (addresses, library names) stay in the log. An SDK error is judged by the gRPC error
    it came from; one of the SDK's own (a refused argument) is written for users."""
    if isinstance(error, VigilError):
        if not isinstance(error.__cause__, grpc.aio.AioRpcError):
            return BackendError(error.status, error.code, error.message)
        error = error.__cause__
    status = error.code()
    match = _VIGIL_DETAILS.fullmatch(error.details() or "")
    if match:
        return BackendError(status, match.group(1), match.group(2))
    if status == grpc.StatusCode.UNAVAILABLE:
        message = f"the {backend} is unavailable; try again shortly"
    elif status == grpc.StatusCode.DEADLINE_EXCEEDED:
        message = f"the {backend} did not answer in time"
    elif status == grpc.StatusCode.UNIMPLEMENTED:
        message = f"the {backend} does not offer this yet"
    else:
        message = f"the {backend} refused the request ({status.name})"
    log.info("%s call failed: %s %s", backend, status.name, error.details())
    return BackendError(status, status.name, message)


@contextlib.contextmanager
def backend(name: str) -> Iterator[None]:
    """Turn a gRPC or SDK failure inside the block into a ``BackendError`` naming ``name``."""
    try:
        yield
    except (grpc.aio.AioRpcError, VigilError) as e:
        raise describe(e, name) from None


def error_response(
    status: int, code: str, message: str, *, retryable: bool = False, **extra: Any
) -> JSONResponse:
    body = ErrorBody(code=code, message=message, retryable=retryable or None, **extra)
    headers = {"Retry-After": str(RETRY_AFTER_S)} if retryable else None
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)


def retryable(status: grpc.StatusCode, code: str) -> bool:
    """Worth retrying as it is: the backend is away, or busy (a full queue, too many uploads)."""
    return status == grpc.StatusCode.UNAVAILABLE or code in _RETRYABLE_CODES


async def _backend_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BackendError)
    again = retryable(exc.status, exc.code)
    return error_response(exc.http_status, exc.code, exc.message, retryable=again)


async def _vigil_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, VigilError)
    status = http_status(exc.status, exc.code)
    return error_response(status, exc.code, exc.message, retryable=exc.retryable)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [
        {"loc": list(e.get("loc", ())), "message": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    first = details[0] if details else {"loc": [], "message": "invalid request"}
    where = ".".join(str(part) for part in first["loc"])
    message = f"{where}: {first['message']}" if where else str(first["message"])
    status = http_status(grpc.StatusCode.INVALID_ARGUMENT)
    return error_response(status, "INVALID_ARGUMENT", message, details=details)


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
