"""The offline default: COCO YOLOv3-tiny run by OpenCV's DNN module on the CPU.

It sees people, cars, knives, scissors, baseball bats and the other COCO classes; COCO has no gun
class, so a weapon model needs the Roboflow or ONNX backend. It finds people that are small in a
wide scene and misses close-ups.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from detector_service.backends.base import DetectorBackend, Image, register
from detector_service.detections import Detections
from detector_service.models import yolo_files
from detector_service.settings import DetectorSettings

INPUT_SIZE = 416


class DarknetYoloBackend(DetectorBackend):
    model_name = "yolov3-tiny-coco"
    # Each frame of a batch costs ~25 MB of layer buffers, and on the CPU batches of 8 ran no faster
    # per frame than batches of 4 (nor than single frames): 4 bounds that memory.
    max_batch = 4

    def __init__(self, settings: DetectorSettings) -> None:
        self.files = yolo_files(settings.model_dir)
        self.names = self.files.names.read_text().strip().splitlines()
        # Loaded at start so that a broken model file fails the service at once.
        self.net: cv2.dnn.Net | None = self._load()
        self.outputs = self.net.getUnconnectedOutLayersNames()
        self.confidence = settings.confidence
        self.nms_iou = settings.nms_iou

    def _load(self) -> cv2.dnn.Net:
        net = cv2.dnn.readNetFromDarknet(str(self.files.cfg), str(self.files.weights))
        net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        return net

    def release(self) -> bool:
        # The weights are 35 MB, but after a forward pass the network holds ~250 MB more:
        # Winograd-packed convolution weights (2-3x faster than without) and one buffer per layer
        # for the last batch size (~25 MB a frame of the batch). Reloading takes ~0.1 s.
        if self.net is None:
            return False
        self.net = None
        return True

    def detect(self, images: Sequence[Image]) -> list[Detections]:
        if not images:
            return []
        blob = cv2.dnn.blobFromImages(
            list(images), 1 / 255.0, (INPUT_SIZE, INPUT_SIZE), swapRB=True, crop=False
        )
        if self.net is None:
            self.net = self._load()
        self.net.setInput(blob)
        outputs = self.net.forward(self.outputs)
        # One output per YOLO layer; with a batch each is (N, rows, 85), else (rows, 85).
        per_layer = [np.asarray(o).reshape(len(images), -1, 5 + len(self.names)) for o in outputs]
        results = []
        for i, image in enumerate(images):
            rows = np.concatenate([layer[i] for layer in per_layer], axis=0)
            results.append(
                Detections.from_yolo_rows(
                    rows,
                    width=image.shape[1],
                    height=image.shape[0],
                    names=self.names,
                    confidence=self.confidence,
                    nms_iou=self.nms_iou,
                    model=self.model_name,
                    objectness=True,
                )
            )
        return results


@register("yolo")
def _create(settings: DetectorSettings) -> DetectorBackend:
    return DarknetYoloBackend(settings)
