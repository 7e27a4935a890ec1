"""YOLOv8-style ONNX models (an Ultralytics export, or the same output) run by onnxruntime.

The output is ``(N, 4 + classes, boxes)``: centre x, centre y, width, height in input pixels, then
one score per class, with no objectness column. Frames are letterboxed the way Ultralytics trains
(aspect kept, grey 114 padding), and boxes are mapped back to the frame's own pixels.
"""

from __future__ import annotations

import ast
import logging
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from detector_service.backends.base import BackendUnavailable, DetectorBackend, Image, register
from detector_service.detections import Detections
from detector_service.settings import DetectorSettings

log = logging.getLogger(__name__)

MODEL_ENV = "VIGIL_DETECTOR_ONNX_MODEL_PATH"
LABELS_ENV = "VIGIL_DETECTOR_ONNX_LABELS_PATH"
#: Frames per run when the model's batch dimension is dynamic.
DYNAMIC_MAX_BATCH = 8
PAD_VALUE = 114


@dataclass(frozen=True, slots=True)
class Letterbox:
    """How one frame was fitted into the model input: scale per axis, then padding."""

    scale_x: float
    scale_y: float
    pad_x: int
    pad_y: int


def letterbox(image: Image, width: int, height: int) -> tuple[Image, Letterbox]:
    h, w = image.shape[:2]
    ratio = min(width / w, height / h)
    new_w, new_h = max(1, round(w * ratio)), max(1, round(h * ratio))
    pad_x, pad_y = (width - new_w) // 2, (height - new_h) // 2
    canvas = np.full((height, width, 3), PAD_VALUE, np.uint8)
    interpolation = cv2.INTER_AREA if ratio < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    canvas[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resized
    return canvas, Letterbox(new_w / w, new_h / h, pad_x, pad_y)


def parse_names(text: str) -> list[str]:
    """Class names from Ultralytics' ``names`` metadata: "{0: 'person', ...}" or a list."""
    value = ast.literal_eval(text)  # a literal only: metadata comes with the model file
    if isinstance(value, dict):
        ids = [int(k) for k in value]
        return [str(value.get(i, i)) for i in range(max(ids) + 1)] if ids else []
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    raise ValueError(f"names metadata is a {type(value).__name__}, not a dict or list")


def choose_providers() -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxYoloBackend(DetectorBackend):
    def __init__(self, settings: DetectorSettings) -> None:
        import onnxruntime as ort  # half a second to import: only when this backend is chosen

        path = settings.onnx_model_path
        if path is None:
            raise BackendUnavailable(
                f"the onnx backend needs a model: set {MODEL_ENV} to a YOLOv8-style .onnx file"
            )
        if not path.is_file():
            raise BackendUnavailable(f"{MODEL_ENV}={str(path)!r} is not a file")
        try:
            self.session = ort.InferenceSession(str(path), providers=choose_providers())
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
            raise BackendUnavailable(f"cannot load ONNX model {str(path)!r}: {exc}") from exc
        self.providers: list[str] = self.session.get_providers()
        # CUDA can be listed yet fail to load (no libcudnn); onnxruntime then quietly uses the CPU.
        log.info("onnx backend: %s on %s", path.name, self.providers[0])

        model_input = self.session.get_inputs()[0]
        self.input_name: str = model_input.name
        self.input_dtype = np.float16 if model_input.type == "tensor(float16)" else np.float32
        batch, _, height, width = (list(model_input.shape) + [None] * 4)[:4]
        self.input_height = height if isinstance(height, int) else settings.onnx_input_size
        self.input_width = width if isinstance(width, int) else settings.onnx_input_size
        # A fixed batch dimension means frames must go in exactly that many at a time.
        self.fixed_batch: int | None = batch if isinstance(batch, int) and batch > 0 else None
        self.max_batch = self.fixed_batch or DYNAMIC_MAX_BATCH

        self.names = self._class_names(settings.onnx_labels_path)
        channels = self.session.get_outputs()[0].shape
        scored = channels[1] - 4 if len(channels) == 3 and isinstance(channels[1], int) else None
        if scored is not None and self.names and scored != len(self.names):
            raise BackendUnavailable(
                f"{path.name} scores {scored} classes but has {len(self.names)} names;"
                f" check {LABELS_ENV}"
            )
        self.confidence = settings.confidence
        self.nms_iou = settings.nms_iou
        self.model_name = f"onnx:{path.stem}"

    def _class_names(self, labels_path: pathlib.Path | None) -> list[str]:
        if labels_path is not None:
            try:
                lines = labels_path.read_text().splitlines()
            except OSError as exc:
                raise BackendUnavailable(
                    f"cannot read {LABELS_ENV}={str(labels_path)!r}: {exc}"
                ) from exc
            return [line.strip() for line in lines if line.strip()]
        text = self.session.get_modelmeta().custom_metadata_map.get("names")
        if text:
            try:
                return parse_names(text)
            except (ValueError, SyntaxError, TypeError) as exc:
                log.warning("ignoring the model's unreadable names metadata: %s", exc)
        log.warning(
            "the model names no classes and %s is unset: classes show as numbers", LABELS_ENV
        )
        return []

    def detect(self, images: Sequence[Image]) -> list[Detections]:
        results: list[Detections] = []
        step = self.max_batch
        for start in range(0, len(images), step):
            results.extend(self._detect_batch(images[start : start + step]))
        return results

    def _detect_batch(self, images: Sequence[Image]) -> list[Detections]:
        if not images:
            return []
        fitted = [letterbox(image, self.input_width, self.input_height) for image in images]
        # BGR HWC uint8 -> RGB NCHW in 0..1, as Ultralytics exports expect.
        batch = np.stack([canvas[:, :, ::-1] for canvas, _ in fitted]).transpose(0, 3, 1, 2)
        blob = (batch.astype(np.float32) / 255.0).astype(self.input_dtype)
        if self.fixed_batch is not None and len(images) < self.fixed_batch:
            padding = np.zeros((self.fixed_batch - len(images), *blob.shape[1:]), blob.dtype)
            blob = np.concatenate([blob, padding])
        (output,) = self.session.run(None, {self.input_name: blob})[:1]
        predictions = np.asarray(output, np.float32)
        if predictions.ndim != 3 or predictions.shape[1] <= 4:
            raise RuntimeError(
                f"{self.model_name}: output shape {predictions.shape}"
                " is not (N, 4 + classes, boxes)"
            )
        return [
            self._decode(predictions[i].T, box, image)
            for i, ((_, box), image) in enumerate(zip(fitted, images, strict=True))
        ]

    def _decode(self, rows: npt.NDArray[np.float32], box: Letterbox, image: Image) -> Detections:
        height, width = image.shape[:2]
        rows = rows.copy()
        # Input pixels -> frame pixels -> 0..1 of the frame, which from_yolo_rows expects.
        rows[:, 0] = (rows[:, 0] - box.pad_x) / box.scale_x / width
        rows[:, 1] = (rows[:, 1] - box.pad_y) / box.scale_y / height
        rows[:, 2] = rows[:, 2] / box.scale_x / width
        rows[:, 3] = rows[:, 3] / box.scale_y / height
        found = Detections.from_yolo_rows(
            rows,
            width=width,
            height=height,
            names=self.names,
            confidence=self.confidence,
            nms_iou=self.nms_iou,
            model=self.model_name,
            objectness=False,
        )
        return found.clipped(width, height)


@register("onnx")
def _create(settings: DetectorSettings) -> DetectorBackend:
    return OnnxYoloBackend(settings)
