"""Tamper and failure detection for one camera: frozen, covered/black, defocused, moved.

Issue 14, item 7. Feed :class:`CameraHealth` a camera's frames with their timestamps; a low rate
(1 fps) is enough, and every check costs a few milliseconds. It returns events, each ``RAISED``
once a condition has held for its configured time and ``CLEARED`` once it has been gone for
``clear_after_s``, with the measurements that decided it and the frame (for the snapshot).

Each check is built so that the camera's normal life does not trip it:

- **FROZEN**: the stream delivers but the picture does not change. A live sensor never repeats
  a picture (noise alone moves 5-40% of its pixels by more than two grey levels from one frame
  to the next, even through a lossy encoder), while a stuck camera re-sending its last picture
  does, give or take the encoder refining it (keyframes, P-frames converging: up to 80% of the
  pixels move, but by a level or two, and fewer than 0.3% by more). So we count the pixels that
  changed by more than ``frozen_pixel_tolerance`` between consecutive frames: a truly static
  scene is still "alive", a frozen one has (almost) none. The frames must keep their own
  per-pixel noise: subsample them (every n-th pixel), never average them down.
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
  The reference follows slow scene changes (``baseline_tau_s``), and phase correlation
  reports how far the picture shifted (for the operator, not for the decision).

**Night.** A camera switching to infrared gives a grey picture (no chroma), brighter or darker,
whose edges look different (foliage turns white) and whose focus shifts (lenses focus infrared
light behind visible light). A grey picture is therefore judged against a reference and a
sharpness baseline of its own, learnt at the first night and kept across days, so the switch
itself raises nothing and a camera knocked during the day is still found moved at night.

**PTZ.** A camera that moves on purpose (``ptz``) never raises MOVED: a scene that no longer
matches the reference starts a move, which lasts while the picture keeps sliding and until it
has been still for ``ptz_settle_s``; then the reference and the sharpness baseline are learnt
again from the new view. DEFOCUSED is suspended meanwhile (zoom refocuses). A caller that knows
of a move (a re-aim the operator accepts) calls :meth:`CameraHealth.expect_move`, which does the
same for any camera, and clears a raised MOVED or DEFOCUSED.
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
    chroma,
    measure,
    similarity,
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
class _View:
    """What the checks learnt about the current view in one light (day colour or night grey);
    forgotten when the camera is re-aimed or its stream changes size."""

    sharpness_samples: list[float] = field(default_factory=list)
    baseline: float | None = None
    reference: FloatArray | None = None


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
        # Keyed by "night" (a grey picture): infrared changes how edges look and where the lens
        # focuses, so the night picture is judged against a night reference and baseline.
        self._views: dict[bool, _View] = {}
        self._shape: tuple[int, int] | None = None
        self._previous_grey: npt.NDArray[np.uint8] | None = None
        self._previous_at = 0.0
        self._previous_structure: FloatArray | None = None
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
        shape = (grey.shape[0], grey.shape[1])
        if shape != self._shape:
            # First frame, or the stream came back at another size: a new view to learn.
            self._shape, self._previous_grey, self._previous_structure = shape, None, None
            self._views.clear()
        night = chroma(frame) <= self.config.night_max_chroma
        m = measure(grey, self._previous_grey, self.config)
        self.last = m
        since = self._previous_at if self._previous_grey is not None else at
        self._previous_grey, self._previous_at = grey, at

        covered = (
            m.contrast < self.config.covered_max_contrast
            or m.brightness < self.config.black_max_brightness
        )
        # A uniform picture has nothing to show change with: covered says it all.
        still = not covered and (
            m.changed_fraction is not None
            and m.changed_fraction <= self.config.frozen_max_changed_fraction
        )
        values = {"changed_fraction": m.changed_fraction or 0.0}
        self._step(HealthKind.FROZEN, still, at, values, frame, events, since=since)
        values = {"brightness": m.brightness, "contrast": m.contrast}
        self._step(HealthKind.COVERED, covered, at, values, frame, events)
        if covered:
            return events  # nothing to see: sharpness and structure mean nothing now

        current = structure(grey)
        if self.config.ptz:
            self._follow_ptz(self._views.get(night), current, at)
        if self._move_until is not None:
            if at < self._move_until:
                # On the move: forget what was pending; judge the new view once it stops.
                self._conditions[HealthKind.DEFOCUSED].reset()
                self._conditions[HealthKind.MOVED].reset()
                return events
            self._move_until = None
            self._relearn(at, frame, events)

        view = self._views.setdefault(night, _View())
        self._check_focus(view, m.sharpness, at, frame, events)
        self._check_structure(view, current, grey.shape[0], at, frame, events)
        return events

    def _follow_ptz(self, view: _View | None, current: FloatArray, at: float) -> None:
        """A PTZ camera's changed scene starts a move, which lasts while the picture slides."""
        previous, self._previous_structure = self._previous_structure, current
        threshold, settle = self.config.moved_min_similarity, self.config.ptz_settle_s
        if self._move_until is not None:
            sliding = previous is not None and similarity(previous, current) < threshold
        else:
            reference = view.reference if view is not None else None
            sliding = reference is not None and similarity(reference, current) < threshold
        if sliding:
            self.expect_move(at + settle)

    def _learning_allowed(self) -> bool:
        # A view first seen while the camera is moved or blurred (the first night after it was
        # knocked) must not learn that state as normal: it waits until the problem clears.
        return HealthKind.MOVED not in self._active and HealthKind.DEFOCUSED not in self._active

    def _check_focus(
        self, view: _View, sharpness: float, at: float, frame: Image, out: list[HealthEvent]
    ) -> None:
        if view.baseline is None:
            if self._learning_allowed():
                view.sharpness_samples.append(sharpness)
                if len(view.sharpness_samples) >= self.config.baseline_frames:
                    view.baseline = float(np.median(view.sharpness_samples))
            return
        blurred = sharpness < self.config.defocus_ratio * view.baseline
        values = {"sharpness": sharpness, "baseline": view.baseline}
        self._step(HealthKind.DEFOCUSED, blurred, at, values, frame, out)
        if not blurred and not self._conditions[HealthKind.DEFOCUSED].pending:
            # Follow slow changes of the scene (leaves, seasons), never a blur in progress.
            view.baseline += self._follow() * (sharpness - view.baseline)

    def _check_structure(
        self,
        view: _View,
        current: FloatArray,
        height: int,
        at: float,
        frame: Image,
        out: list[HealthEvent],
    ) -> None:
        if view.reference is None:
            if view.baseline is not None:  # learnt from a view that passed the focus check
                view.reference = current
            return
        alike = similarity(current, view.reference)
        # A PTZ camera never gets here with a changed scene: _follow_ptz made it a move.
        moved = alike < self.config.moved_min_similarity
        values = {"similarity": alike}
        if moved:
            (dx, dy), _ = cv2.phaseCorrelate(view.reference, current)
            scale = height / current.shape[0]
            values |= {"shift_x": dx * scale, "shift_y": dy * scale}
        self._step(HealthKind.MOVED, moved, at, values, frame, out)
        if not moved and not self._conditions[HealthKind.MOVED].pending:
            rate = self._follow()
            blended = view.reference + rate * (current - view.reference)
            norm = max(float(np.linalg.norm(blended)), 1e-9)
            view.reference = np.asarray(blended / norm, np.float32)

    def _relearn(self, at: float, frame: Image, out: list[HealthEvent]) -> None:
        # Day and night alike: the camera points somewhere else now.
        self._views.clear()
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
