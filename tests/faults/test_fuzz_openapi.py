"""schemathesis over the bridge's own OpenAPI document, against the real bridge (with a real
detector and analyzer behind it) on 127.0.0.1: whatever a client sends that the schema lets it
describe, the bridge answers without crashing and without a 5xx.

Bounded: a few examples per operation, derandomized; the whole run takes seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.faults.inputs import stack_in_thread

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def bridge_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("openapi")
    with stack_in_thread(root / "data", analyzer={"max_upload_bytes": 1024 * 1024}) as (
        stack,
        _loop,
    ):
        yield schemathesis.openapi.from_url(f"{stack.bridge.http}/openapi.json")


FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def check(case: Any) -> None:
    response = case.call(timeout=15)
    where = f"{case.method} {case.formatted_path}"
    assert response.status_code < 500, f"{where} -> {response.status_code}: {response.text[:300]}"
    if response.status_code >= 400:
        body = response.json()
        assert {"code", "message"} <= set(body), (where, body)


def test_no_request_crashes_the_bridge(bridge_schema: Any) -> None:
    # schemathesis' own pytest integration (from_fixture) does not run on pytest 9; its
    # strategies do, one Hypothesis run per operation.
    operations = [result.ok() for result in bridge_schema.get_all_operations()]
    assert len(operations) >= 8
    for operation in operations:
        run = FUZZ(given(case=operation.as_strategy())(lambda case: check(case)))
        run()
