"""The Protobuf API against its released baseline: ``buf breaking`` in ``make lint``.

``contracts/released.binpb`` is a Buf image of the contract as last released (``make
proto-baseline`` rebuilds it when a version is cut). Each test copies the module (``buf.yaml`` and
``proto/``) to a scratch folder, edits it as a developer might, and runs the same ``buf breaking``
command ``make lint`` runs: incompatible edits must fail it, compatible ones must not. The module
has no Buf Schema Registry dependencies, so buf never needs the network.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
BUF = ROOT / ".venv" / "bin" / "buf"
BASELINE = ROOT / "contracts" / "released.binpb"
DETECTOR = pathlib.Path("proto/vigil/detector/v1/detector_service.proto")
COMMON = pathlib.Path("proto/vigil/common/v1/common.proto")


@pytest.fixture
def module(tmp_path: pathlib.Path) -> pathlib.Path:
    """A copy of the Buf module as it is in this checkout."""
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    shutil.copytree(ROOT / "proto", tmp_path / "proto")
    return tmp_path


def breaking(module: pathlib.Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, BUF_CACHE_DIR=str(module / ".buf-cache"))
    return subprocess.run(
        [str(BUF), "breaking", "--against", str(BASELINE)],
        cwd=module,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def edit(path: pathlib.Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} is not in {path} exactly once"
    path.write_text(text.replace(old, new))


def test_make_lint_runs_buf_breaking_against_the_committed_baseline() -> None:
    assert BASELINE.is_file(), f"{BASELINE} is not committed"
    commands = subprocess.run(
        ["make", "-n", "lint"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert ".venv/bin/buf breaking --against contracts/released.binpb" in commands, commands


def test_the_baseline_describes_every_proto_file_and_the_tree_is_compatible(
    module: pathlib.Path,
) -> None:
    listed = subprocess.run(
        [str(BUF), "ls-files", str(BASELINE)], capture_output=True, text=True, check=True
    ).stdout.split()
    ours = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto").rglob("*.proto"))
    assert sorted(f for f in listed if f.startswith("vigil/")) == ours
    result = breaking(module)
    assert result.returncode == 0, result.stdout + result.stderr


def test_adding_a_field_is_compatible(module: pathlib.Path) -> None:
    edit(
        module / DETECTOR,
        "  uint32 height = 9;\n",
        "  uint32 height = 9;\n  // The camera's clock at capture, when it sends one.\n"
        "  google.protobuf.Timestamp camera_time = 100;\n",
    )
    result = breaking(module)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("path", "old", "new", "complaint"),
    [
        pytest.param(DETECTOR, "  bool annotate = 5;\n", "", r"annotate", id="field deleted"),
        pytest.param(
            DETECTOR, "  uint32 height = 9;", "  string height = 9;", r"type", id="field type"
        ),
        pytest.param(
            DETECTOR,
            "  bool annotate = 5;",
            "  bool annotate = 15;",
            r"annotate",
            id="field number",
        ),
        pytest.param(
            DETECTOR,
            "rpc ListSources(ListSourcesRequest)",
            "rpc ListAllSources(ListSourcesRequest)",
            r"ListSources",
            id="rpc renamed",
        ),
    ],
)
def test_an_incompatible_change_fails(
    module: pathlib.Path, path: pathlib.Path, old: str, new: str, complaint: str
) -> None:
    edit(module / path, old, new)
    result = breaking(module)
    assert result.returncode != 0, f"buf breaking accepted it:\n{result.stdout}{result.stderr}"
    # Refused for what was changed, at the place it was changed (not for a missing baseline).
    lines = [line for line in result.stdout.splitlines() if line.startswith(str(path) + ":")]
    assert any(re.search(complaint, line) for line in lines), result.stdout + result.stderr
