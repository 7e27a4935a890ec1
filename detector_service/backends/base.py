"""The detector backend interface: one ABC, and an explicit registry of implementations."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from detector_service.detections import Detections
from detector_service.settings import DetectorSettings

Image = npt.NDArray[np.uint8]  # BGR, shape (H, W, 3)


class DetectorBackend(abc.ABC):
    """Runs a model over frames. Called from one inference thread only, never concurrently."""

    #: Name shown in detections and metrics, for example "yolov3-tiny-coco".
    model_name: str = "unknown"
    #: Most frames one ``detect`` call takes; 1 means the backend does not batch.
    max_batch: int = 1
    #: The classes the model reports; empty when it does not say (watch rules check theirs).
    names: Sequence[str] = ()

    @abc.abstractmethod
    def detect(self, images: Sequence[Image]) -> list[Detections]:
        """Detect objects in each image; one ``Detections`` per image, in order."""

    def close(self) -> None:  # noqa: B027 - most backends hold nothing to release
        """Release the model's resources."""

    def release(self) -> bool:
        """Free what the next ``detect`` can rebuild (a loaded network, its working buffers),
        because the model has been idle; True when something was freed."""
        return False


class BackendUnavailable(RuntimeError):
    """The backend cannot run with this configuration; the message says what to change."""


BackendFactory = Callable[[DetectorSettings], DetectorBackend]
_REGISTRY: dict[str, BackendFactory] = {}


def register(name: str) -> Callable[[BackendFactory], BackendFactory]:
    def add(factory: BackendFactory) -> BackendFactory:
        _REGISTRY[name] = factory
        return factory

    return add


def create(settings: DetectorSettings) -> DetectorBackend:
    """Build the backend that ``settings.backend`` names."""
    try:
        factory = _REGISTRY[settings.backend]
    except KeyError:
        raise BackendUnavailable(
            f"unknown detector backend {settings.backend!r}; choose one of {sorted(_REGISTRY)}"
        ) from None
    return factory(settings)
