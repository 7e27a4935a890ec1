"""The one error table: every ``vigil.common.v1.ErrorCode`` has exactly one row and every row a
code, each class's code has a row, and the rows keep the rules the table states (retryable rows
tell clients to try again later, the SDK retries only statuses every code of which is retryable)."""

from __future__ import annotations

import grpc
import pytest

from vigil.common.v1 import common_pb2
from vigil.core import errors
from vigil.core.errors import ERRORS, WS_TRY_AGAIN, VigilError, retryable_statuses
from vigil.sdk.options import RetryPolicy

PREFIX = "ERROR_CODE_"


def test_every_enum_value_has_one_row_and_every_row_a_value() -> None:
    values = common_pb2.ErrorCode.DESCRIPTOR.values
    names = [value.name.removeprefix(PREFIX) for value in values]
    assert (values[0].number, names[0]) == (0, "UNSPECIFIED")
    assert sorted(names[1:]) == sorted(ERRORS)
    assert len(set(names)) == len(names) == len({value.number for value in values})


def test_every_error_class_has_a_row() -> None:
    classes = [
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, VigilError)
    ]
    assert len(classes) == 15
    assert {cls.code for cls in classes} <= set(ERRORS)


@pytest.mark.parametrize("code", sorted(ERRORS))
def test_rows_keep_the_tables_rules(code: str) -> None:
    row = ERRORS[code]
    assert row.retryable == (row.retry_after_s is not None)
    assert (row.ws_close == WS_TRY_AGAIN) == row.retryable
    assert not (row.final and row.retryable)
    assert row.retry_after_s is None or row.retry_after_s > 0
    assert 400 <= row.http < 600
    error = VigilError("m", code=code)
    assert (error.status, error.http_status, error.ws_close_code) == (
        row.status,
        row.http,
        row.ws_close,
    )
    assert (error.retryable, error.retry_after_s) == (row.retryable, row.retry_after_s)


def test_the_sdk_retries_what_the_table_calls_retryable() -> None:
    assert retryable_statuses() == (grpc.StatusCode.UNAVAILABLE,)
    assert RetryPolicy().status_codes == ("UNAVAILABLE",)
    # RESOURCE_EXHAUSTED is retryable as OVERLOADED, not as TOO_LARGE: gRPC cannot tell them
    # apart, so it does not retry either.
    assert ERRORS["OVERLOADED"].retryable
    assert not ERRORS["TOO_LARGE"].retryable
    assert ERRORS["OVERLOADED"].status == ERRORS["TOO_LARGE"].status


def test_a_code_this_version_does_not_know_travels_as_its_class() -> None:
    error = errors.NotFound("gone", code="NEWER_CODE")
    row = ERRORS["NOT_FOUND"]
    assert (error.code, error.status, error.http_status) == ("NEWER_CODE", row.status, row.http)


def test_an_error_class_without_a_row_is_refused() -> None:
    with pytest.raises(TypeError, match="no row"):
        type("Unlisted", (VigilError,), {"code": "NOT_IN_THE_TABLE"})
