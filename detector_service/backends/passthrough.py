"""The "none" backend: frames pass through unannotated, for plain viewing and transport tests."""

from __future__ import annotations

from collections.abc import Sequence

from detector_service.backends.base import DetectorBackend, Image, register
from detector_service.detections import Detections
from detector_service.settings import DetectorSettings


class PassthroughBackend(DetectorBackend):
    model_name = "none"
    max_batch = 64

    def detect(self, images: Sequence[Image]) -> list[Detections]:
        return [Detections.empty(self.model_name) for _ in images]


@register("none")
def _create(settings: DetectorSettings) -> DetectorBackend:
    return PassthroughBackend()
