"""A source's alert policy from a sources file: named, validated like the rest of the entry."""

from __future__ import annotations

import pathlib

import pytest

from detector_service.sources import load_sources_file
from vigil.core.errors import InvalidInput
from vigil.detector.v1 import detector_service_pb2 as pb

ENTRY = '[[sources]]\nid = "gate"\nkind = "test_pattern"\n'


def sources_file(tmp_path: pathlib.Path, text: str) -> pathlib.Path:
    path = tmp_path / "sources.toml"
    path.write_text(text)
    path.chmod(0o600)
    return path


@pytest.mark.parametrize(
    ("name", "policy"),
    [
        ("at_opening", pb.ALERT_POLICY_AT_OPENING),
        ("when_confirmed", pb.ALERT_POLICY_WHEN_CONFIRMED),
        ("both", pb.ALERT_POLICY_BOTH),
    ],
)
def test_a_named_policy_is_read(
    tmp_path: pathlib.Path, name: str, policy: pb.AlertPolicy.ValueType
) -> None:
    (spec,) = load_sources_file(sources_file(tmp_path, ENTRY + f'alert_policy = "{name}"\n'))
    assert spec.alert_policy == policy


def test_no_policy_leaves_the_service_default(tmp_path: pathlib.Path) -> None:
    (spec,) = load_sources_file(sources_file(tmp_path, ENTRY))
    assert spec.alert_policy == pb.ALERT_POLICY_UNSPECIFIED


def test_an_unknown_policy_is_refused(tmp_path: pathlib.Path) -> None:
    with pytest.raises(InvalidInput, match="alert_policy must be one of"):
        load_sources_file(sources_file(tmp_path, ENTRY + 'alert_policy = "sometimes"\n'))
