"""Class allow-list and per-class thresholds: read from the environment, applied to real output."""

from __future__ import annotations

import pathlib

import numpy as np
import pydantic
import pytest

from detector_service.backends import create
from detector_service.detections import Detections
from detector_service.settings import DetectorSettings
from tests.detector_service.backends.test_onnx import BLUE, GREEN, RED, build_model, frame


def test_filters_parse_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    monkeypatch.chdir(tmp_path)  # away from any developer .env
    for name in ("VIGIL_DETECTOR_CLASS_ALLOW", "VIGIL_DETECTOR_CLASS_THRESHOLDS"):
        monkeypatch.delenv(name, raising=False)
    assert DetectorSettings().class_allow is None
    assert DetectorSettings().class_thresholds == {}
    monkeypatch.setenv("VIGIL_DETECTOR_CLASS_ALLOW", '["person", "gun"]')
    monkeypatch.setenv("VIGIL_DETECTOR_CLASS_THRESHOLDS", '{"gun": 0.8, "person": 0.5}')
    settings = DetectorSettings()
    assert settings.class_allow == ["person", "gun"]
    assert settings.class_thresholds == {"gun": 0.8, "person": 0.5}
    monkeypatch.setenv("VIGIL_DETECTOR_CLASS_THRESHOLDS", '{"gun": 1.5}')
    with pytest.raises(pydantic.ValidationError):
        DetectorSettings()


def test_allow_list_and_thresholds_on_onnx_output(tmp_path: pathlib.Path) -> None:
    backend = create(
        DetectorSettings(
            backend="onnx", onnx_model_path=build_model(tmp_path / "m.onnx"), confidence=0.4
        )
    )
    # Square frames: each colour's box scores 1.0, and a half-bright green one 0.5.
    dim_green = frame(GREEN, 64, 64) // 2
    found = backend.detect(
        [frame(RED, 64, 64), frame(GREEN, 64, 64), frame(BLUE, 64, 64), dim_green]
    )
    assert [f.class_name for f in found] == [("person",), ("gun",), ("knife",), ("gun",)]
    settings = DetectorSettings(class_allow=["person", "gun"], class_thresholds={"gun": 0.8})
    kept = [
        f.filter(allow=settings.class_allow, thresholds=settings.class_thresholds) for f in found
    ]
    # The knife is not allowed; the dim gun (0.5) is under its class's 0.8.
    assert [k.class_name for k in kept] == [("person",), ("gun",), (), ()]
    np.testing.assert_allclose(kept[1].xyxy, found[1].xyxy)


def test_select_and_clipped() -> None:
    found = Detections(
        xyxy=np.array([[-5, -5, 10, 10], [90, 90, 120, 95], [200, 0, 210, 5]], np.float32),
        confidence=np.array([0.9, 0.5, 0.7], np.float32),
        class_id=np.array([0, 1, 2], np.int32),
        class_name=("a", "b", "c"),
        model="m",
    )
    clipped = found.clipped(100, 100)
    assert clipped.class_name == ("a", "b")  # "c" lies wholly outside the frame
    np.testing.assert_allclose(clipped.xyxy, [[0, 0, 10, 10], [90, 90, 100, 95]])
    picked = found.select(found.confidence > 0.6)
    assert picked.class_name == ("a", "c")
    assert picked.class_id.tolist() == [0, 2]
