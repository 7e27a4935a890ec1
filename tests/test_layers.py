"""The layers and the no-cycle rule: the import-linter contracts ``make lint`` runs.

Each test copies the four packages and ``pyproject.toml`` to a scratch folder, edits the copy as a
developer might, and runs ``lint-imports`` there exactly as ``make lint`` does: the real tree must
keep every contract, and each edit must break the one contract written against it, naming the
import that breaks it.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
LINT_IMPORTS = pathlib.Path(sys.executable).parent / "lint-imports"
PACKAGES = ("detector_service", "analyzer_service", "bridge", "clients/vigil")


def lint_imports(root: pathlib.Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    # The copy's packages come first on the path: the venv's editable install points elsewhere.
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{root / 'clients'}", "COLUMNS": "200"}
    selected = [arg for contract in contracts for arg in ("--contract", contract)]
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", *selected],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def tree(tmp_path: pathlib.Path) -> pathlib.Path:
    """A copy of this checkout's Python packages and their import-linter configuration."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package,
            tmp_path / package,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
    return tmp_path


def append(path: pathlib.Path, line: str) -> None:
    path.write_text(path.read_text() + f"\n{line}\n")


def assert_broken(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    report = result.stdout + result.stderr
    assert result.returncode == 1, report
    assert "1 broken" in report, report
    for text in expected:
        assert text in report, report


def test_the_tree_keeps_every_contract(tree: pathlib.Path) -> None:
    result = lint_imports(tree)
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    assert "0 broken" in report, report
    assert "BROKEN" not in report


def test_a_service_importing_the_benchmarks_breaks_the_layers(tree: pathlib.Path) -> None:
    append(tree / "detector_service" / "server.py", "import vigil.bench.latency")
    assert_broken(
        lint_imports(tree, "services-no-tools"),
        "detector_service.server -> vigil.bench.latency",
    )


def test_a_service_importing_another_breaks_their_independence(tree: pathlib.Path) -> None:
    append(tree / "bridge" / "app.py", "from analyzer_service import settings")
    assert_broken(
        lint_imports(tree, "services-independent"),
        "bridge.app -> analyzer_service.settings",
    )


def test_the_library_importing_a_service_breaks_it(tree: pathlib.Path) -> None:
    append(tree / "clients" / "vigil" / "sdk" / "client.py", "import bridge.settings")
    assert_broken(lint_imports(tree, "vigil-no-services"), "vigil.sdk.client -> bridge.settings")


def test_the_shared_runtime_importing_the_sdk_breaks_the_layers(tree: pathlib.Path) -> None:
    append(tree / "clients" / "vigil" / "core" / "errors.py", "import vigil.sdk.errors")
    assert_broken(lint_imports(tree, "vigil-layers"), "vigil.core.errors -> vigil.sdk.errors")


def test_an_import_cycle_breaks_the_acyclic_contract(tree: pathlib.Path) -> None:
    # The pipeline imports the settings; the settings importing the pipeline closes a cycle.
    append(tree / "detector_service" / "settings.py", "import detector_service.pipeline")
    result = lint_imports(tree, "no-cycles")
    assert_broken(result, "No cycles are allowed in detector_service")
    # Either import of the pair is named as the one to remove.
    assert {".settings -> .pipeline", ".pipeline -> .settings"} & {
        line.strip("- ").split(" (")[0] for line in result.stdout.splitlines()
    }, result.stdout
