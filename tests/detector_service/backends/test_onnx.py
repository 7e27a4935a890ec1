"""The ONNX backend on a tiny YOLOv8-shaped model that each test builds with onnx's helpers."""

from __future__ import annotations

import logging
import pathlib
from typing import Any

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from detector_service.backends import BackendUnavailable, create
from detector_service.backends.onnx import (
    OnnxYoloBackend,
    choose_providers,
    letterbox,
    parse_names,
)
from detector_service.settings import DetectorSettings

SIZE = 64
NAMES = ["person", "gun", "knife"]
# One box per class, (cx, cy, w, h) in 64x64 input pixels. Box k scores only class k, with the
# mean of input channel k (R, G, B after the backend's BGR -> RGB): a frame's colour picks its box.
BOXES = np.array(
    [
        [32, 32, 32, 16],  # person: well inside
        [60, 10, 20, 20],  # gun: reaches past the right and top edges of a letterboxed frame
        [30, 48, 8, 8],  # knife
    ],
    np.float32,
).T  # (4, K)
RED, GREEN, BLUE = (0, 0, 255), (0, 255, 0), (255, 0, 0)  # BGR, as frames arrive


def build_model(
    path: pathlib.Path, *, batch: int | str = "N", names: str | None = repr(dict(enumerate(NAMES)))
) -> pathlib.Path:
    """(batch, 3, 64, 64) -> (batch, 4 + 3, 3): constant boxes, scores = channel mean x identity."""
    k = BOXES.shape[1]
    nodes = [
        # (N, 3, 1, 1) -> (N, 3, 1): the mean of each channel.
        helper.make_node("ReduceMean", ["images"], ["means"], axes=[2, 3], keepdims=1),
        helper.make_node("Squeeze", ["means", "last"], ["means_n31"]),
        helper.make_node("Mul", ["means_n31", "identity"], ["scores"]),  # (N, 3, K)
        # (N, 1, 1) zeros, so the constant boxes broadcast to the batch.
        helper.make_node("ReduceMean", ["images"], ["all_mean"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Squeeze", ["all_mean", "last"], ["all_n11"]),
        helper.make_node("Mul", ["all_n11", "zero"], ["zeros"]),
        helper.make_node("Add", ["zeros", "boxes"], ["xywh"]),  # (N, 4, K)
        helper.make_node("Concat", ["xywh", "scores"], ["output0"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny-yolov8",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [batch, 4 + len(NAMES), k])],
        initializer=[
            numpy_helper.from_array(BOXES[None], "boxes"),
            numpy_helper.from_array(np.eye(len(NAMES), k, dtype=np.float32), "identity"),
            numpy_helper.from_array(np.zeros((), np.float32), "zero"),
            numpy_helper.from_array(np.array([-1], np.int64), "last"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if names is not None:
        helper.set_model_props(model, {"names": names, "stride": "32"})
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def frame(bgr: tuple[int, int, int], w: int, h: int) -> np.ndarray:
    image = np.zeros((h, w, 3), np.uint8)
    image[:] = bgr
    return image


def settings(model: pathlib.Path, **overrides: Any) -> DetectorSettings:
    # Grey padding alone scores 114/255 = 0.45 x the padded fraction: 0.4 keeps it out.
    values: dict[str, Any] = {"confidence": 0.4, **overrides}
    return DetectorSettings(backend="onnx", onnx_model_path=model, **values)


@pytest.fixture
def model(tmp_path: pathlib.Path) -> pathlib.Path:
    return build_model(tmp_path / "tiny.onnx")


def only_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """onnxruntime reports the CPU provider alone, as its CPU build does (onnxruntime-gpu not)."""
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])


def test_decodes_boxes_into_frame_pixels_on_cpu(
    model: pathlib.Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    only_cpu(monkeypatch)
    caplog.set_level(logging.INFO)
    backend = create(settings(model))
    assert isinstance(backend, OnnxYoloBackend)
    assert backend.providers == ["CPUExecutionProvider"]
    assert "on CPUExecutionProvider" in caplog.text
    assert backend.model_name == "onnx:tiny"
    assert backend.names == NAMES
    assert (backend.input_width, backend.input_height) == (SIZE, SIZE)

    # 128x64 fits 64x32 into the input: scale 0.5, 16 rows of padding above and below. The mean
    # of red over the input is 0.5 + 0.5 * 114/255 = 0.72 for person and 0.22 for the others.
    (found,) = backend.detect([frame(RED, 128, 64)])
    assert found.class_name == ("person",)
    # Input (16, 24, 48, 40) -> ((x - 0) / 0.5, (y - 16) / 0.5).
    np.testing.assert_allclose(found.xyxy[0], [32, 16, 96, 48], atol=1e-3)
    assert found.confidence[0] == pytest.approx(0.5 + 0.5 * 114 / 255, abs=0.01)
    assert found.class_id.tolist() == [0]

    # Green picks the gun box, input (50, 0, 70, 20) -> (100, -32, 140, 8): clipped to 128x64.
    (found,) = backend.detect([frame(GREEN, 128, 64)])
    assert found.class_name == ("gun",)
    np.testing.assert_allclose(found.xyxy[0], [100, 0, 128, 8], atol=1e-3)


def test_a_batch_of_two_runs_once_with_each_frames_own_geometry(
    model: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = create(settings(model))
    assert isinstance(backend, OnnxYoloBackend)
    assert backend.max_batch > 1  # the batch dimension is dynamic
    runs: list[tuple[int, ...]] = []
    real_run = backend.session.run

    def counting_run(outputs: Any, feeds: dict[str, np.ndarray]) -> Any:
        runs.append(feeds[backend.input_name].shape)
        return real_run(outputs, feeds)

    monkeypatch.setattr(backend, "session", _Proxy(backend.session, run=counting_run))
    # 32x128 (tall) fits 16x64 into the input: scale 0.5, 24 columns of padding left and right.
    red_wide, blue_tall = frame(RED, 128, 64), frame(BLUE, 32, 128)
    found = backend.detect([red_wide, blue_tall])
    assert runs == [(2, 3, SIZE, SIZE)]
    assert [f.class_name for f in found] == [("person",), ("knife",)]
    np.testing.assert_allclose(found[0].xyxy[0], [32, 16, 96, 48], atol=1e-3)
    # Knife input (26, 44, 34, 52) -> ((x - 24) / 0.5, y / 0.5).
    np.testing.assert_allclose(found[1].xyxy[0], [4, 88, 20, 104], atol=1e-3)


def test_a_fixed_batch_model_is_fed_one_frame_at_a_time(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = create(settings(build_model(tmp_path / "fixed.onnx", batch=1)))
    assert isinstance(backend, OnnxYoloBackend)
    assert backend.max_batch == 1
    runs: list[tuple[int, ...]] = []
    real_run = backend.session.run

    def counting_run(outputs: Any, feeds: dict[str, np.ndarray]) -> Any:
        runs.append(feeds[backend.input_name].shape)
        return real_run(outputs, feeds)

    monkeypatch.setattr(backend, "session", _Proxy(backend.session, run=counting_run))
    found = backend.detect([frame(RED, 128, 64), frame(GREEN, 64, 64), frame(BLUE, 32, 128)])
    assert runs == [(1, 3, SIZE, SIZE)] * 3
    assert [f.class_name for f in found] == [("person",), ("gun",), ("knife",)]
    # A square frame needs no padding: the gun box is (50, 0, 70, 20) at scale 1.
    np.testing.assert_allclose(found[1].xyxy[0], [50, 0, 64, 20], atol=1e-3)


def test_labels_file_when_the_model_has_no_names(tmp_path: pathlib.Path) -> None:
    model = build_model(tmp_path / "bare.onnx", names=None)
    labels = tmp_path / "labels.txt"
    labels.write_text("human\npistol\nblade\n\n")
    backend = create(settings(model, onnx_labels_path=labels))
    assert isinstance(backend, OnnxYoloBackend)
    assert backend.names == ["human", "pistol", "blade"]
    (found,) = backend.detect([frame(GREEN, 64, 64)])
    assert found.class_name == ("pistol",)

    # Without either, classes are numbered rather than lost.
    (found,) = create(settings(model)).detect([frame(GREEN, 64, 64)])
    assert found.class_name == ("1",)


def test_labels_file_wins_over_metadata(model: pathlib.Path, tmp_path: pathlib.Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\n")
    (found,) = create(settings(model, onnx_labels_path=labels)).detect([frame(BLUE, 64, 64)])
    assert found.class_name == ("c",)


def test_labels_that_do_not_match_the_output_are_refused(
    model: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("only\ntwo\n")
    with pytest.raises(BackendUnavailable, match="3 classes but has 2 names"):
        create(settings(model, onnx_labels_path=labels))


def test_missing_model_names_the_variable(tmp_path: pathlib.Path) -> None:
    with pytest.raises(BackendUnavailable, match="VIGIL_DETECTOR_ONNX_MODEL_PATH"):
        create(DetectorSettings(backend="onnx"))
    with pytest.raises(BackendUnavailable, match="not a file"):
        create(settings(tmp_path / "absent.onnx"))
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(BackendUnavailable, match="cannot load"):
        create(settings(tmp_path / "junk.onnx"))


@pytest.mark.parametrize(
    ("available", "chosen"),
    [
        (
            ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
            ["CUDAExecutionProvider", "CPUExecutionProvider"],
        ),
        (
            ["CPUExecutionProvider", "CUDAExecutionProvider"],
            ["CUDAExecutionProvider", "CPUExecutionProvider"],
        ),
        (["AzureExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"]),
        (["CPUExecutionProvider"], ["CPUExecutionProvider"]),
    ],
)
def test_cuda_first_where_onnxruntime_offers_it_else_cpu(
    monkeypatch: pytest.MonkeyPatch, available: list[str], chosen: list[str]
) -> None:
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: available)
    assert choose_providers() == chosen


def test_the_chosen_providers_reach_the_session(
    model: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    offered = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: offered)
    asked: list[Any] = []
    real_session = onnxruntime.InferenceSession

    def session(path: str, providers: Any = None, **kwargs: Any) -> Any:
        asked.append(providers)
        # The CPU build cannot load CUDA: the session gets what this machine really has.
        return real_session(path, providers=["CPUExecutionProvider"], **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", session)
    backend = create(settings(model))
    assert asked == [offered]
    assert isinstance(backend, OnnxYoloBackend)
    (found,) = backend.detect([frame(RED, 128, 64)])
    assert found.class_name == ("person",)


def test_names_metadata_forms() -> None:
    assert parse_names("{0: 'person', 1: 'gun'}") == ["person", "gun"]
    assert parse_names("{1: 'gun', 0: 'person', 3: 'knife'}") == ["person", "gun", "2", "knife"]
    assert parse_names("['a', 'b']") == ["a", "b"]
    with pytest.raises(ValueError, match="malformed"):
        parse_names("__import__('os').system('true')")


def test_letterbox_geometry() -> None:
    canvas, box = letterbox(frame(RED, 640, 480), 64, 64)
    assert canvas.shape == (64, 64, 3)
    assert (box.scale_x, box.scale_y, box.pad_x, box.pad_y) == (0.1, 0.1, 0, 8)
    assert (canvas[:8] == 114).all()
    assert (canvas[8:56] == RED).all()


class _Proxy:
    def __init__(self, inner: Any, **overrides: Any) -> None:
        self._inner = inner
        self.__dict__.update(overrides)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
