"""Tamper and failure detection for one camera: frozen, covered/black, defocused, moved.

Issue 14, item 7. Feed :class:`CameraHealth` a camera's frames with their timestamps; a low rate
(1 fps) is enough, and every check costs a few milliseconds. It returns events, each ``RAISED``
once a condition has held for its configured time and ``CLEARED`` once it has been gone for
``clear_after_s``, with the measurements that decided it and the frame (for the snapshot).

Each check is built so that the camera's normal life does not trip it:

- **FROZEN**: the stream delivers but the picture does not change. A live sensor never repeats
  a picture exactly (noise alone changes most pixels by a level or two, and the encoder's
  keyframes refresh everything), while a stuck decoder or a camera re-sending its last frame
  repeats it bit for bit. So we count pixels that changed at all (beyond
  ``frozen_pixel_tolerance``) between consecutive frames, at full resolution: a truly static
  scene is still "alive", a frozen one has (almost) none.
- **COVERED** (black or uniform picture): a hand, a bag, spray paint or a dead sensor leave a
  picture with no structure. We measure the mean brightness and the contrast (standard
  deviation) of a small blurred grey copy: the blur removes sensor noise, so a covered lens
  at night (noisy, dark) still reads as uniform. An infrared night picture is darker and grey
  but keeps its structure, so it is not covered.
- **DEFOCUSED**: sharpness is the variance of the Laplacian divided by the picture's own
  variance. Dividing makes it independent of brightness and contrast, so night, dusk and
  clouds do not move it; blur (a knocked or sprayed lens, autofocus lost) lowers it. Scenes
  differ hugely in sharpness, so the camera is compared with its *own* baseline, learnt from
  its first healthy frames and then followed slowly (``baseline_tau_s``).
- **MOVED**: we compare the picture's *structure* (where its edges are) with a reference:
  gradient magnitudes of a coarse grey copy, square-rooted so that strong edges do not dominate,
  blurred, and normalised to unit length; the similarity is their cosine. Edges stay where they
  are when the camera switches to infrared or the light changes, but move when the camera is
  turned. People passing lower the similarity only while they pass, hence the sustained time.
  The reference follows slow scene changes (``reference_tau_s``), and phase correlation
  reports how far the picture shifted (for the operator, not for the decision).

A PTZ camera moving on purpose calls :meth:`CameraHealth.expect_move`: MOVED and DEFOCUSED are
suspended until then (the picture is in motion, zoom refocuses) and afterwards the reference
and the sharpness baseline are learnt again from the new view. For a PTZ camera on patrol that
nobody announces, set ``check_moved=False``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import cv2
import numpy as np
import numpy.typing as npt

from detector_service.backends.base import Image
from detector_service.health_checks import (
    Condition,
    HealthConfig,
    Measurements,
    Transition,
    measure,
    structure,
)
from detector_service.motion import validate_frame

FloatArray = npt.NDArray[np.float32]
__all__ = [
    "CameraHealth",
    "HealthConfig",
    "HealthEvent",
    "HealthKind",
    "Measurements",
    "Transition",
]


class HealthKind(enum.StrEnum):
    FROZEN = "frozen"
    COVERED = "covered"
    DEFOCUSED = "defocused"
    MOVED = "moved"


@dataclass(frozen=True, slots=True)
class HealthEvent:
    """A condition raised or cleared.

    ``frame`` is the frame passed to :meth:`CameraHealth.update` at that moment, not a copy: the
    caller encodes its snapshot from it and must not write into frames it has handed over.
    """

    kind: HealthKind
    transition: Transition
    #: When the condition began (the same in the RAISED and the CLEARED event).
    started_at: float
    #: When this transition happened.
    at: float
    #: The measurements that decided it, for example ``{"sharpness": 0.004, "baseline": 0.05}``.
    values: Mapping[str, float]
    frame: Image = field(repr=False)


@dataclass(slots=True)
class _Learnt:
    """What the checks learnt about the current view; forgotten when the view changes."""

    shape: tuple[int, int]
    sharpness_samples: list[float] = field(default_factory=list)
    baseline: float | None = None
    reference: FloatArray | None = None
    previous_grey: npt.NDArray[np.uint8] | None = None
    previous_at: float = 0.0


class CameraHealth:
    """The health checks of one camera. Call :meth:`update` with its frames, in time order."""

    def __init__(self, config: HealthConfig | None = None) -> None:
        self.config = config or HealthConfig()
        c = self.config
        self._conditions = {
            HealthKind.FROZEN: Condition(c.frozen_after_s, c.clear_after_s),
            HealthKind.COVERED: Condition(c.covered_after_s, c.clear_after_s),
            HealthKind.DEFOCUSED: Condition(c.defocus_after_s, c.clear_after_s),
            HealthKind.MOVED: Condition(c.moved_after_s, c.clear_after_s),
        }
        self._active: dict[HealthKind, HealthEvent] = {}
        self._learnt: _Learnt | None = None
        self._move_until: float | None = None
        self._last_at: float | None = None
        self._dt = 0.0  # seconds since the previous frame
        self.last: Measurements | None = None

    @property
    def active(self) -> Mapping[HealthKind, HealthEvent]:
        """The RAISED event of each condition that holds now."""
        return MappingProxyType(self._active)

    def expect_move(self, until: float) -> None:
        """A PTZ move (or a re-aim) is under way until ``until``: no MOVED or DEFOCUSED meanwhile;
        the reference and the sharpness baseline are learnt again from the new view."""
        self._move_until = until if self._move_until is None else max(until, self._move_until)

    def update(self, frame: Image, at: float) -> list[HealthEvent]:
        frame = validate_frame(frame)
        if not math.isfinite(at):
            raise ValueError(f"timestamp must be a finite number, got {at}")
        if self._last_at is not None and at < self._last_at:
            raise ValueError(f"timestamps must not go backwards: {at} after {self._last_at}")
        self._dt = 0.0 if self._last_at is None else at - self._last_at
        self._last_at = at
        events: list[HealthEvent] = []

        grey = np.asarray(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), np.uint8)
        learnt = self._learnt
        if learnt is None or learnt.shape != grey.shape:
            # First frame, or the stream came back at another size: a new view to learn.
            learnt = self._learnt = _Learnt((grey.shape[0], grey.shape[1]))
        m = measure(grey, learnt.previous_grey, self.config)
        self.last = m
        since = learnt.previous_at if learnt.previous_grey is not None else at
        learnt.previous_grey, learnt.previous_at = grey, at

        still = m.changed_fraction is not None and (
            m.changed_fraction <= self.config.frozen_max_changed_fraction
        )
        values = {"changed_fraction": m.changed_fraction or 0.0}
        self._step(HealthKind.FROZEN, still, at, values, frame, events, since=since)
        covered = (
            m.contrast < self.config.covered_max_contrast
            or m.brightness < self.config.black_max_brightness
        )
        values = {"brightness": m.brightness, "contrast": m.contrast}
        self._step(HealthKind.COVERED, covered, at, values, frame, events)
        if covered:
            return events  # nothing to see: sharpness and structure mean nothing now

        if self._move_until is not None:
            if at < self._move_until:
                # On the move: forget what was pending; judge the new view once it stops.
                self._conditions[HealthKind.DEFOCUSED].reset()
                self._conditions[HealthKind.MOVED].reset()
                return events
            self._move_until = None
            self._relearn(learnt, at, frame, events)

        self._check_focus(learnt, m.sharpness, at, frame, events)
        if self.config.check_moved:
            self._check_structure(learnt, grey, at, frame, events)
        return events

    def _check_focus(
        self, learnt: _Learnt, sharpness: float, at: float, frame: Image, out: list[HealthEvent]
    ) -> None:
        if learnt.baseline is None:
            learnt.sharpness_samples.append(sharpness)
            if len(learnt.sharpness_samples) >= self.config.baseline_frames:
                learnt.baseline = float(np.median(learnt.sharpness_samples))
            return
        blurred = sharpness < self.config.defocus_ratio * learnt.baseline
        values = {"sharpness": sharpness, "baseline": learnt.baseline}
        self._step(HealthKind.DEFOCUSED, blurred, at, values, frame, out)
        if not blurred and not self._conditions[HealthKind.DEFOCUSED].pending:
            # Follow slow changes of the scene (leaves, seasons), never a blur in progress.
            learnt.baseline += self._follow() * (sharpness - learnt.baseline)

    def _check_structure(
        self,
        learnt: _Learnt,
        grey: npt.NDArray[np.uint8],
        at: float,
        frame: Image,
        out: list[HealthEvent],
    ) -> None:
        current = structure(grey)
        if learnt.reference is None:
            if learnt.baseline is not None:  # learnt from a view that passed the focus check
                learnt.reference = current
            return
        similarity = float(np.sum(current * learnt.reference))
        moved = similarity < self.config.moved_min_similarity
        values = {"similarity": similarity}
        if moved:
            (dx, dy), _ = cv2.phaseCorrelate(learnt.reference, current)
            scale = grey.shape[0] / current.shape[0]
            values |= {"shift_x": dx * scale, "shift_y": dy * scale}
        self._step(HealthKind.MOVED, moved, at, values, frame, out)
        if not moved and not self._conditions[HealthKind.MOVED].pending:
            rate = self._follow()
            blended = learnt.reference + rate * (current - learnt.reference)
            norm = max(float(np.linalg.norm(blended)), 1e-9)
            learnt.reference = np.asarray(blended / norm, np.float32)

    def _relearn(self, learnt: _Learnt, at: float, frame: Image, out: list[HealthEvent]) -> None:
        learnt.reference, learnt.baseline = None, None
        learnt.sharpness_samples.clear()
        for kind in (HealthKind.MOVED, HealthKind.DEFOCUSED):
            raised = self._active.get(kind)
            if raised is not None:
                # The operator re-aimed the camera: this view is the new normal.
                self._conditions[kind].reset()
                self._clear(raised, at, {"relearnt": 1.0}, frame, out)

    def _follow(self) -> float:
        """How far to move towards the new value: a time-based rate, whatever the frame rate."""
        return 1.0 - math.exp(-self._dt / self.config.baseline_tau_s)

    def _step(
        self,
        kind: HealthKind,
        holds: bool,
        at: float,
        values: dict[str, float],
        frame: Image,
        out: list[HealthEvent],
        since: float | None = None,
    ) -> None:
        change = self._conditions[kind].update(holds, at, since=since)
        if change is Transition.RAISED:
            started = self._conditions[kind].started_at
            event = HealthEvent(kind, Transition.RAISED, started, at, values, frame)
            self._active[kind] = event
            out.append(event)
        elif change is Transition.CLEARED and kind in self._active:
            self._clear(self._active[kind], at, values, frame, out)

    def _clear(
        self,
        raised: HealthEvent,
        at: float,
        values: Mapping[str, float],
        frame: Image,
        out: list[HealthEvent],
    ) -> None:
        del self._active[raised.kind]
        out.append(
            HealthEvent(raised.kind, Transition.CLEARED, raised.started_at, at, values, frame)
        )
