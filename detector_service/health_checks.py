"""The thresholds and measurements behind :mod:`detector_service.camera_health`, and its
condition timer.

Kept apart so that each is small and testable on its own; see ``camera_health`` for why each
measurement is what it is.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
Grey = npt.NDArray[np.uint8]

#: Rows of the coarse copy whose edges are compared with the reference (MOVED).
STRUCTURE_HEIGHT = 90
#: Rows of the copy whose colourfulness tells a day picture from an infrared one.
CHROMA_HEIGHT = 30


class Transition(enum.StrEnum):
    RAISED = "raised"
    CLEARED = "cleared"


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """Thresholds of the checks; times in seconds of the frames' timestamps."""

    #: Rows of the grey copy that brightness, contrast and sharpness are measured on.
    analysis_height: int = 240
    frozen_after_s: float = 10.0
    #: A pixel counts as changed when it differs by more than this many grey levels. Not 0: an
    #: encoder fed a frozen picture keeps refining it (each keyframe, then P-frames converging),
    #: which moves up to 80% of the decoded pixels by a level or two, while sensor noise moves
    #: 5-40% of a live camera's pixels by more than two levels even through a lossy encoder.
    frozen_pixel_tolerance: int = 2
    #: Consecutive frames are "the same picture" when at most this fraction of pixels changed
    #: (a frozen stream through H.264 stays below 0.3%, a clean live camera above 4%).
    frozen_max_changed_fraction: float = 0.01
    covered_after_s: float = 5.0
    #: A picture whose contrast (grey-level standard deviation) is below this is uniform.
    covered_max_contrast: float = 6.0
    #: A picture whose mean grey level is below this is black, whatever its contrast.
    black_max_brightness: float = 10.0
    defocus_after_s: float = 30.0
    #: Defocused when sharpness falls below this fraction of the camera's baseline.
    defocus_ratio: float = 0.35
    #: Healthy frames measured before the sharpness baseline (and the reference) are trusted.
    baseline_frames: int = 5
    #: Time constant with which the baseline and the reference follow slow changes.
    baseline_tau_s: float = 3600.0
    moved_after_s: float = 10.0
    #: Moved when the structure's similarity with the reference (cosine, 0..1) is below this.
    moved_min_similarity: float = 0.5
    #: A PTZ camera: a changed scene is an intended move, never MOVED; the reference and the
    #: sharpness baseline are learnt again once the picture has been still for ``ptz_settle_s``.
    ptz: bool = False
    ptz_settle_s: float = 5.0
    #: A picture whose mean chroma (max minus min channel, 0..255) is at most this is grey: an
    #: infrared night picture, judged against a night reference and baseline of its own.
    night_max_chroma: float = 3.0
    #: A raised condition clears after it has been absent this long (no flapping).
    clear_after_s: float = 3.0

    def __post_init__(self) -> None:
        if self.analysis_height < 32:
            raise ValueError(f"analysis_height must be at least 32, got {self.analysis_height}")
        times = ("frozen_after_s", "covered_after_s", "defocus_after_s", "moved_after_s")
        for name in (*times, "ptz_settle_s", "night_max_chroma"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.clear_after_s < 0 or self.baseline_tau_s <= 0 or self.baseline_frames < 1:
            raise ValueError("clear_after_s ≥ 0, baseline_tau_s > 0 and baseline_frames ≥ 1")
        for name in ("defocus_ratio", "moved_min_similarity", "frozen_max_changed_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be within 0..1")


@dataclass(frozen=True, slots=True)
class Measurements:
    """One frame's figures; ``changed_fraction`` is None for a camera's first frame."""

    brightness: float  # mean grey level, 0..255
    contrast: float  # standard deviation of grey levels after a blur that removes noise
    sharpness: float  # variance of the Laplacian / variance of the picture
    changed_fraction: float | None  # pixels that changed since the previous frame


def measure(grey: Grey, previous: Grey | None, config: HealthConfig) -> Measurements:
    height = min(config.analysis_height, grey.shape[0])
    width = max(1, round(grey.shape[1] * height / grey.shape[0]))
    small = cv2.resize(grey, (width, height), interpolation=cv2.INTER_AREA)
    mean, std = cv2.meanStdDev(cv2.GaussianBlur(small, (5, 5), 0))
    laplacian = cv2.Laplacian(small, cv2.CV_32F)
    variance = float(np.var(small))
    # A flat picture has no sharpness to speak of; its 0 is not a blur (COVERED handles it).
    sharpness = float(np.var(laplacian)) / variance if variance >= 1.0 else 0.0

    changed: float | None = None
    if previous is not None:
        differs = cv2.absdiff(grey, previous) > config.frozen_pixel_tolerance
        changed = int(np.count_nonzero(differs)) / grey.size
    return Measurements(float(mean[0][0]), float(std[0][0]), sharpness, changed)


def chroma(frame: npt.NDArray[np.uint8]) -> float:
    """Mean colourfulness of a BGR picture: about 0 for a grey (infrared) one, even through an
    encoder's 4:2:0 chroma, and well above 3 for a colour scene, even a dull one. Measured on a
    very coarse copy: colour covers areas, while noise in each channel averages away."""
    height = min(CHROMA_HEIGHT, frame.shape[0])
    width = max(1, round(frame.shape[1] * height / frame.shape[0]))
    coarse = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
    return float(np.mean(coarse.max(axis=2) - coarse.min(axis=2)))


def similarity(a: FloatArray, b: FloatArray) -> float:
    """Cosine of two ``structure`` maps: 1 for the same view, about 0 for unrelated ones."""
    return float(np.sum(a * b))


def structure(grey: Grey) -> FloatArray:
    """Where the picture's edges are: a unit-length map, comparable by a dot product (cosine).

    Gradient magnitudes (not intensities) ignore brightness and colour; their square root stops
    a few high-contrast edges (a lamp at night) from outweighing the rest; the blur tolerates
    the small jitter of a camera on a pole in the wind; subtracting the mean makes the cosine a
    correlation, 0 for unrelated pictures.
    """
    height = min(STRUCTURE_HEIGHT, grey.shape[0])
    width = max(1, round(grey.shape[1] * height / grey.shape[0]))
    coarse = cv2.resize(grey, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32)
    gx = cv2.Sobel(coarse, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(coarse, cv2.CV_32F, 0, 1, ksize=3)
    edges = np.asarray(cv2.GaussianBlur(np.sqrt(cv2.magnitude(gx, gy)), (0, 0), 1.5), np.float32)
    edges -= float(edges.mean())
    norm = float(np.linalg.norm(edges))
    return np.asarray(edges / norm if norm > 1e-6 else edges, np.float32)


class Condition:
    """Raises once a condition has held for ``after_s``; clears once absent for ``clear_after_s``.

    Time is the frames' timestamps, never the wall clock, so a camera read at 1 fps or at 15 fps
    raises after the same time, and a test can feed a day in a second.
    """

    def __init__(self, after_s: float, clear_after_s: float) -> None:
        self.after_s, self.clear_after_s = after_s, clear_after_s
        self.raised = False
        self.started_at = 0.0
        self._since: float | None = None
        self._absent_since: float | None = None

    @property
    def pending(self) -> bool:
        """The condition holds now but has not (yet) been raised."""
        return self._since is not None and not self.raised

    def reset(self) -> None:
        self.raised, self._since, self._absent_since = False, None, None

    def update(self, holds: bool, at: float, since: float | None = None) -> Transition | None:
        """``since``: when the condition began, if earlier than ``at`` (a frozen picture began
        with the previous frame)."""
        if holds:
            self._absent_since = None
            if self._since is None:
                self._since = at if since is None else since
            if not self.raised and at - self._since >= self.after_s:
                self.raised, self.started_at = True, self._since
                return Transition.RAISED
            return None
        if not self.raised:
            self._since = None
            return None
        if self._absent_since is None:
            self._absent_since = at
        if at - self._absent_since >= self.clear_after_s:
            self.reset()
            return Transition.CLEARED
        return None
