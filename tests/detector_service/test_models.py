from __future__ import annotations

import pathlib
import shutil

import pytest

from detector_service import envcheck
from detector_service.models import ModelMissing, yolo_files
from detector_service.settings import DetectorSettings


def test_cached_model_is_intact() -> None:
    files = yolo_files(DetectorSettings().model_dir)
    assert files.weights.stat().st_size > 30_000_000
    assert "person" in files.names.read_text().splitlines()


def test_corrupt_or_missing_model_is_reported_with_the_fix(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ModelMissing, match="make models"):
        yolo_files(tmp_path)
    shutil.copytree(DetectorSettings().model_dir / "yolov3-tiny", tmp_path / "yolov3-tiny")
    (tmp_path / "yolov3-tiny" / "coco.names").write_text("tampered\n")
    with pytest.raises(ModelMissing, match="corrupt"):
        yolo_files(tmp_path)


def test_environment_has_exactly_one_opencv_4_with_darknet() -> None:
    assert envcheck.problems() == []
