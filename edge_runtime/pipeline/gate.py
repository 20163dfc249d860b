"""Dynamic inference gating: skip inference while a camera looks at an unchanging scene.

A cheap check on a small, slightly blurred gray copy of each frame (a fraction of a millisecond of
OpenCV) decides whether the frame is worth the model's time. The reference is the last frame
that *was* inferred, not the
previous frame, so slow changes (a door opening over many frames) add up until they count. A
heartbeat inference every `max_interval` seconds re-checks a still scene (lighting, a model that
also reports "nothing").
"""

from __future__ import annotations

import time
from typing import Callable

import cv2
import numpy as np

from edge_runtime.config.schema import GateConfig

GATE_WIDTH = 64  # the motion check runs on a frame this wide (height keeps the aspect ratio)


class MotionGate:
    """`should_infer(image)` per frame, then `inferred()` when the frame really went to the model.

    Buffers are allocated for the first frame's size and reused; a frame of another size resets
    the reference (and is inferred).
    """

    def __init__(self, config: GateConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._small: np.ndarray | None = None  # the current frame, downscaled, BGR or gray
        self._gray_raw: np.ndarray | None = None
        self._gray: np.ndarray | None = None
        self._reference: np.ndarray | None = None
        self._diff: np.ndarray | None = None
        self._source_shape: tuple[int, ...] = ()
        self._last_inference = -float("inf")
        self.last_motion = 0.0  # fraction of changed pixels of the last checked frame

    def should_infer(self, image: np.ndarray) -> bool:
        if not self.config.motion:
            return True
        gray = self._downscale(image)
        now = self._clock()
        if self._reference is None:
            self.last_motion = 1.0
            return True
        assert self._diff is not None
        cv2.absdiff(gray, self._reference, dst=self._diff)
        changed = cv2.countNonZero(cv2.threshold(self._diff, self.config.pixel_threshold, 255,
                                                 cv2.THRESH_BINARY, dst=self._diff)[1])
        self.last_motion = changed / self._diff.size
        if self.last_motion > self.config.motion_threshold:
            return True
        interval = self.config.max_interval
        return interval > 0 and now - self._last_inference >= interval

    def inferred(self) -> None:
        """The frame last passed to `should_infer` was inferred: it becomes the reference."""
        self._last_inference = self._clock()
        if self.config.motion and self._gray is not None:
            if self._reference is None:
                self._reference = np.empty_like(self._gray)
            np.copyto(self._reference, self._gray)

    def _downscale(self, image: np.ndarray) -> np.ndarray:
        if image.shape != self._source_shape:
            height, width = image.shape[:2]
            small_h = max(1, round(height * GATE_WIDTH / width))
            channels = image.shape[2:]  # () for gray, (3,) or (4,) for color
            self._small = np.empty((small_h, GATE_WIDTH, *channels), np.uint8)
            self._gray_raw = np.empty((small_h, GATE_WIDTH), np.uint8)
            self._gray = np.empty((small_h, GATE_WIDTH), np.uint8)
            self._diff = np.empty((small_h, GATE_WIDTH), np.uint8)
            self._reference = None
            self._source_shape = image.shape
        assert self._small is not None and self._gray is not None and self._gray_raw is not None
        # Bilinear sampling straight down to 64 px costs ~0.2 ms even for 1080p (INTER_AREA
        # averages every pixel and costs 20x more); the 3x3 blur on the small copy then smooths
        # sensor noise and JPEG artifacts, which pixel_threshold absorbs.
        cv2.resize(image, (GATE_WIDTH, self._small.shape[0]), dst=self._small,
                   interpolation=cv2.INTER_LINEAR)
        if self._small.ndim == 2:
            np.copyto(self._gray_raw, self._small)
        else:
            code = cv2.COLOR_BGR2GRAY if self._small.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
            cv2.cvtColor(self._small, code, dst=self._gray_raw)
        cv2.GaussianBlur(self._gray_raw, (3, 3), 0, dst=self._gray)
        return self._gray
