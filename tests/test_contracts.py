"""`buf breaking` against the committed image of the released contract (``make lint`` runs it):
an incompatible change to the Protobuf API fails, a compatible one passes. Offline: the module
has no remote dependencies."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
BUF = REPO / ".venv" / "bin" / "buf"
BASELINE = REPO / "proto" / "baseline" / "vigil-v1.json"
DETECTOR = pathlib.Path("proto/vigil/detector/v1/detector_service.proto")


@pytest.fixture
def tree(tmp_path: pathlib.Path) -> pathlib.Path:
    """A copy of the contract's module to change."""
    shutil.copy(REPO / "buf.yaml", tmp_path / "buf.yaml")
    shutil.copytree(REPO / "proto", tmp_path / "proto", ignore=shutil.ignore_patterns("baseline"))
    return tmp_path


def breaking(tree: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BUF), "breaking", "--against", str(BASELINE), "--error-format=json"],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=120,
    )


def edit(tree: pathlib.Path, old: str, new: str) -> None:
    path = tree / DETECTOR
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_the_committed_contract_matches_its_baseline(tree: pathlib.Path) -> None:
    result = breaking(tree)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("old", "new", "rule"),
    [
        ("  string display_name = 8;\n", "", "FIELD_NO_DELETE"),
        ("  double max_fps = 5;", "  float max_fps = 5;", "FIELD_SAME_TYPE"),
        ("  rpc ListSources(", "  rpc ListAllSources(", "RPC_NO_DELETE"),
        ("  double max_fps = 5;", "  double max_fps = 15;", "FIELD_NO_DELETE"),
    ],
    ids=["field deleted", "field type changed", "rpc renamed", "field renumbered"],
)
def test_an_incompatible_change_fails(tree: pathlib.Path, old: str, new: str, rule: str) -> None:
    edit(tree, old, new)
    result = breaking(tree)
    assert result.returncode != 0
    assert rule in result.stdout + result.stderr


def test_a_compatible_change_passes(tree: pathlib.Path) -> None:
    edit(
        tree,
        "  string display_name = 8;\n",
        "  string display_name = 8;\n  // Added later: compatible.\n  string site = 99;\n",
    )
    result = breaking(tree)
    assert result.returncode == 0, result.stdout + result.stderr
