"""Starting the detector service as ``vigil run`` does (``python -m detector_service``)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys


def test_roboflow_without_a_key_exits_with_one_line_naming_the_variable(
    tmp_path: pathlib.Path,
) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "ROBOFLOW_API_KEY" and not k.startswith("VIGIL_")
    }
    env.update(
        VIGIL_DETECTOR_BACKEND="roboflow",
        VIGIL_DETECTOR_ROBOFLOW_MODEL_ID="weapons-abc12/3",
        VIGIL_DETECTOR_PORT="0",
        VIGIL_DETECTOR_DATA_DIR=str(tmp_path / "data"),
    )
    # tmp_path as the working directory: no .env there can supply a key.
    done = subprocess.run(
        [sys.executable, "-m", "detector_service"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "VIGIL_DETECTOR_ROBOFLOW_API_KEY" in lines[0]
    assert "ROBOFLOW_API_KEY" in lines[0].replace("VIGIL_DETECTOR_ROBOFLOW_API_KEY", "")
    assert not (tmp_path / "data").exists()  # it stopped before doing anything
