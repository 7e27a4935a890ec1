"""``Detections``: the one value type every detector backend produces.

Backends differ in wire formats (Darknet rows, Roboflow JSON, YOLOv8 tensors); each has a
``from_<backend>()`` adapter here, and everything downstream (filters, drawing, incidents, protos)
sees only this type.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from vigil.common.v1 import common_pb2

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int32]


@dataclass(frozen=True, slots=True)
class Detections:
    """N boxes of one frame: ``xyxy`` in pixels, with confidence, class id and class name.

    ``track_id`` is set once a tracker has seen the boxes (``detector_service.tracking``): the
    object's identity across frames, -1 for a box no track has claimed yet.
    """

    xyxy: FloatArray  # shape (N, 4)
    confidence: FloatArray  # shape (N,)
    class_id: IntArray  # shape (N,)
    class_name: tuple[str, ...]
    model: str
    track_id: IntArray | None = None  # shape (N,)

    def __len__(self) -> int:
        return len(self.class_name)

    @classmethod
    def empty(cls, model: str) -> Detections:
        return cls(
            xyxy=np.zeros((0, 4), np.float32),
            confidence=np.zeros(0, np.float32),
            class_id=np.zeros(0, np.int32),
            class_name=(),
            model=model,
        )

    @classmethod
    def from_yolo_rows(
        cls,
        rows: npt.NDArray[np.float32],
        *,
        width: int,
        height: int,
        names: Sequence[str],
        confidence: float,
        nms_iou: float,
        model: str,
        objectness: bool,
    ) -> Detections:
        """Decode YOLO rows ``[cx, cy, w, h, (obj,) class scores...]`` in 0..1 of the frame.

        OpenCV's Darknet output already multiplies class scores by objectness (``objectness``
        False then); YOLOv8 rows have no objectness column at all.
        """
        if rows.size == 0:
            return cls.empty(model)
        scores = rows[:, 5:] if objectness else rows[:, 4:]
        class_id = scores.argmax(axis=1).astype(np.int32)
        conf = scores[np.arange(len(scores)), class_id].astype(np.float32)
        keep = conf >= confidence
        if not keep.any():
            return cls.empty(model)
        rows, class_id, conf = rows[keep], class_id[keep], conf[keep]
        w = rows[:, 2] * width
        h = rows[:, 3] * height
        x = rows[:, 0] * width - w / 2
        y = rows[:, 1] * height - h / 2
        return cls._nms(np.stack([x, y, w, h], axis=1), conf, class_id, names, nms_iou, model)

    @classmethod
    def from_roboflow(cls, response: Mapping[str, Any], *, model: str) -> Detections:
        """Adapt a Roboflow object-detection response; its x, y are the box centre in pixels."""
        predictions = response.get("predictions") or []
        if not predictions:
            return cls.empty(model)
        xyxy = np.array(
            [
                [
                    p["x"] - p["width"] / 2,
                    p["y"] - p["height"] / 2,
                    p["x"] + p["width"] / 2,
                    p["y"] + p["height"] / 2,
                ]
                for p in predictions
            ],
            np.float32,
        )
        return cls(
            xyxy=xyxy,
            confidence=np.array([p["confidence"] for p in predictions], np.float32),
            class_id=np.array([p.get("class_id", -1) for p in predictions], np.int32),
            class_name=tuple(str(p["class"]) for p in predictions),
            model=model,
        )

    @staticmethod
    def _nms(
        xywh: npt.NDArray[np.float32],
        conf: FloatArray,
        class_id: IntArray,
        names: Sequence[str],
        nms_iou: float,
        model: str,
    ) -> Detections:
        keep = np.asarray(
            cv2.dnn.NMSBoxesBatched(xywh.tolist(), conf.tolist(), class_id.tolist(), 0.0, nms_iou),
            np.int64,
        ).reshape(-1)
        xywh, conf, class_id = xywh[keep], conf[keep], class_id[keep]
        xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        return Detections(
            xyxy=xyxy.astype(np.float32),
            confidence=conf,
            class_id=class_id,
            class_name=tuple(
                names[i] if 0 <= i < len(names) else str(int(i)) for i in class_id.tolist()
            ),
            model=model,
        )

    def select(self, keep: npt.NDArray[np.bool_]) -> Detections:
        """The boxes where ``keep`` is true, in order."""
        return Detections(
            xyxy=self.xyxy[keep],
            confidence=self.confidence[keep],
            class_id=self.class_id[keep],
            class_name=tuple(n for n, k in zip(self.class_name, keep.tolist(), strict=True) if k),
            model=self.model,
            track_id=None if self.track_id is None else self.track_id[keep],
        )

    def clipped(self, width: int, height: int) -> Detections:
        """Boxes clipped to a ``width`` x ``height`` frame; boxes left with no area are dropped."""
        if not len(self):
            return self
        xyxy = self.xyxy.copy()
        xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, width)
        xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, height)
        inside = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
        return Detections(
            xyxy=xyxy,
            confidence=self.confidence,
            class_id=self.class_id,
            class_name=self.class_name,
            model=self.model,
            track_id=self.track_id,
        ).select(inside)

    def filter(
        self,
        *,
        allow: Collection[str] | None = None,
        thresholds: Mapping[str, float] | None = None,
    ) -> Detections:
        """Keep allowed classes whose confidence reaches their class's threshold."""
        if not len(self) or (allow is None and not thresholds):
            return self
        keep = np.array(
            [
                (allow is None or name in allow) and conf >= (thresholds or {}).get(name, 0.0)
                for name, conf in zip(self.class_name, self.confidence.tolist(), strict=True)
            ],
            bool,
        )
        return self.select(keep)

    def with_track_ids(self, track_id: IntArray) -> Detections:
        """These boxes with their tracks' ids (-1 where no track claims a box)."""
        return Detections(
            xyxy=self.xyxy,
            confidence=self.confidence,
            class_id=self.class_id,
            class_name=self.class_name,
            model=self.model,
            track_id=track_id,
        )

    def track_ids(self) -> list[int | None]:
        """Each box's track id, None where it has none."""
        if self.track_id is None:
            return [None] * len(self)
        return [t if t >= 0 else None for t in self.track_id.tolist()]

    def to_proto(self, weapon_classes: Collection[str] = ()) -> list[common_pb2.Detection]:
        return [
            common_pb2.Detection(
                box=common_pb2.BoundingBox(x_min=x0, y_min=y0, x_max=x1, y_max=y1),
                class_name=name,
                class_id=cid,
                confidence=conf,
                model=self.model,
                is_weapon=name in weapon_classes,
                track_id=track,
            )
            for (x0, y0, x1, y1), conf, cid, name, track in zip(
                self.xyxy.tolist(),
                self.confidence.tolist(),
                self.class_id.tolist(),
                self.class_name,
                self.track_ids(),
                strict=True,
            )
        ]
