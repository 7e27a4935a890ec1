"""The work a live source does on one frame, on its processing thread: the motion gate, model
and tracker (``gating.py``), boxes drawn, and a JPEG encoded when someone needs the picture.

Moved out of ``pipeline.py`` as it was (``LiveSource._process`` and ``_wants_jpeg``, and the mean
model time): the pipeline keeps the threads, the state and the fan-out.
"""

from __future__ import annotations

from collections.abc import Callable

from detector_service.annotate import draw, encode_jpeg
from detector_service.backends.base import Image
from detector_service.batcher import InferenceBatcher
from detector_service.gating import GatedDetector
from detector_service.settings import DetectorSettings
from detector_service.subscribers import Processed, WeaponCrop
from detector_service.watch_rules import RuleWatch
from vigil.common.v1 import common_pb2
from vigil.detector.v1 import detector_service_pb2 as pb

# Context kept around a weapon box in its crop, as a fraction of the box's longer side.
CROP_MARGIN = 0.25
# Weight the mean model time keeps of its past at each frame.
EMA_DECAY = 0.9
# An always-on source nobody watches encodes a picture of a still scene this often (nanoseconds).
SNAPSHOT_EVERY_NS = 1_000_000_000


class FrameWork:
    """Detect, draw and encode the frames of one source, numbering them."""

    def __init__(
        self,
        spec: pb.SourceSpec,
        settings: DetectorSettings,
        batcher: InferenceBatcher,
        rules: RuleWatch | None = None,
    ) -> None:
        self.source_id = spec.id
        # Watch rules judge each detected frame before its boxes are drawn (watch_rules.py).
        self.rules = rules
        self.settings = settings
        # Model time per frame as an exponential moving average, with the number of frames in it.
        self._inference_ema = (0.0, 0)
        self._sequence = 0
        # Motion gate, model and tracker: what each frame shows (gating.py).
        self._detector = GatedDetector(spec, settings, batcher)
        self._jpeg_ns = 0  # capture time of the last picture encoded for nobody in particular

    def configure(self, spec: pb.SourceSpec) -> None:
        """Take a source's new settings (motion settings apply from the next frame)."""
        self._detector.configure(spec)

    def inference_ms(self) -> float:
        """The mean model time per frame."""
        ema, n = self._inference_ema
        # Divided by the weight the average has gathered so far, a mean that started at 0 does
        # not read low for its first ~20 frames (as Adam corrects its moments).
        return ema / (1 - EMA_DECAY**n) if n else 0.0

    def process(
        self,
        image: Image,
        capture_ns: int,
        counters: pb.SourceCounters,
        viewers: Callable[[], bool],
        *,
        always: bool,
    ) -> Processed:
        """``viewers``: whether someone wants this source's pictures now (asked once the frame
        is detected); ``always``: the source is captured with nobody watching."""
        self._sequence += 1
        error = None
        detections: list[common_pb2.Detection] = []
        crops: tuple[WeaponCrop, ...] = ()
        inference_ms = 0.0
        weapons = self.settings.weapon_classes
        try:
            found, inference_ms = self._detector.process(image, capture_ns, counters)
            if inference_ms:
                ema, n = self._inference_ema
                self._inference_ema = (EMA_DECAY * ema + (1 - EMA_DECAY) * inference_ms, n + 1)
            detections = found.to_proto(weapons)
            crops = weapon_crops(image, detections)
            if self.rules is not None:
                self.rules.observe(image, detections, self._detector.motion, capture_ns)
            draw(image, found, weapons)
        except Exception as exc:
            # The stream goes on unannotated; the error is flagged on the frame and counted.
            counters.detection_errors += 1
            error = common_pb2.Error(code="DETECTION_FAILED", message=str(exc), retryable=True)
        encode = self._wants_jpeg(capture_ns, bool(detections), viewers, always)
        return Processed(
            sequence=self._sequence,
            capture_ns=capture_ns,
            jpeg=encode_jpeg(image, self.settings.jpeg_quality) if encode else b"",
            width=image.shape[1],
            height=image.shape[0],
            detections=detections,
            inference_ms=inference_ms,
            error=error,
            source_id=self.source_id,
            crops=crops,
        )

    def _wants_jpeg(
        self, capture_ns: int, boxes: bool, viewers: Callable[[], bool], always: bool
    ) -> bool:
        # Encoding a 720p JPEG costs about as much as decoding the frame: on a still camera
        # nobody watches it was half of the whole cost. Its picture is needed by viewers, by an
        # incident (a frame with boxes; every frame for clips), and as the newest snapshot,
        # which a picture a second keeps fresh; other frames go out without one.
        if viewers() or boxes or self.settings.incident_clips or not always:
            return True
        if capture_ns - self._jpeg_ns < SNAPSHOT_EVERY_NS:
            return False
        self._jpeg_ns = capture_ns
        return True


def weapon_crops(image: Image, detections: list[common_pb2.Detection]) -> tuple[WeaponCrop, ...]:
    """Copies of the weapon boxes (with a margin of context) before boxes are drawn on the
    frame: a few small copies, and only on frames that show a weapon."""
    height, width = image.shape[:2]
    crops = []
    for d in detections:
        if not d.is_weapon:
            continue
        box = d.box
        margin = CROP_MARGIN * max(box.x_max - box.x_min, box.y_max - box.y_min)
        x0, y0 = max(0, int(box.x_min - margin)), max(0, int(box.y_min - margin))
        x1, y1 = min(width, int(box.x_max + margin) + 1), min(height, int(box.y_max + margin) + 1)
        if x1 > x0 and y1 > y0:
            crops.append(WeaponCrop(d, image[y0:y1, x0:x1].copy()))
    return tuple(crops)
