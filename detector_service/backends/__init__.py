"""Detector backends. Importing this package registers every built-in backend."""

from detector_service.backends import darknet, onnx, passthrough, roboflow
from detector_service.backends.base import (
    BackendUnavailable,
    DetectorBackend,
    Image,
    create,
    register,
)

__all__ = [
    "BackendUnavailable",
    "DetectorBackend",
    "Image",
    "create",
    "darknet",
    "onnx",
    "passthrough",
    "register",
    "roboflow",
]
