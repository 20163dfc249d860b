"""Video files and local cameras (V4L2 index or /dev path) through OpenCV VideoCapture.

Network cameras are `type = "stream"` (stream.py): newest frame, timeouts, redacted credentials.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from edge_runtime.config.typed import at_least
from edge_runtime.sources.stream import redact
from edge_runtime.sources.base import (
    EndOfStream,
    Frame,
    Kind,
    Source,
    SourceContext,
    SourceError,
    SourceTraits,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoOptions:
    type: str
    path: str
    loop: bool = False
    fps: float = field(default=0.0, metadata=at_least(0))

    def traits(self) -> SourceTraits:
        return SourceTraits(Kind.IMAGE, live=False, max_fps=self.fps)


@dataclass(frozen=True)
class CameraOptions:
    type: str
    device: int | str = 0  # index or /dev/videoN
    width: int = field(default=0, metadata=at_least(0))  # 0 = the camera's default
    height: int = field(default=0, metadata=at_least(0))
    fps: float = field(default=0.0, metadata=at_least(0))

    def traits(self) -> SourceTraits:
        return SourceTraits(Kind.IMAGE, live=True, max_fps=self.fps)

    def cross_check(self) -> tuple[str, str] | None:
        if isinstance(self.device, str) and "://" in self.device:
            return "device", ("a network camera is type = \"stream\" with url = ... (newest frame, "
                              "timeouts, reconnects, credentials kept out of logs), not "
                              f"{redact(self.device)!r}")
        return None


class _CaptureSource(Source):
    def __init__(self, target: int | str, loop: bool, live: bool) -> None:
        self.target = target
        self.loop = loop
        self.live = live
        self._capture: cv2.VideoCapture | None = None
        self._count = 0

    def _configure(self, capture: cv2.VideoCapture) -> None:
        """Hook for camera settings."""

    def open(self) -> None:
        self.close()
        capture = cv2.VideoCapture(self.target)
        if not capture.isOpened():
            capture.release()
            raise SourceError(f"cannot open {self.target!r}")
        self._configure(capture)
        self._capture = capture

    def read(self) -> Frame | None:
        if self._capture is None:
            raise SourceError(f"{self.target!r} is not open")
        ok, image = self._capture.read()
        if not ok:
            if self.live:
                raise SourceError(f"{self.target!r} stopped delivering frames")
            if not self.loop:
                raise EndOfStream
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self._capture.read()
            if not ok:
                raise EndOfStream
        frame = Frame(image, self._count, f"{Path(str(self.target)).name}#{self._count}")
        self._count += 1
        return frame

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class VideoSource(_CaptureSource):
    def __init__(self, options: VideoOptions, ctx: SourceContext) -> None:
        super().__init__(str(ctx.resolve(options.path)), options.loop, live=False)


class CameraSource(_CaptureSource):
    def __init__(self, options: CameraOptions, ctx: SourceContext) -> None:
        super().__init__(options.device, loop=False, live=True)
        self.options = options

    def _configure(self, capture: cv2.VideoCapture) -> None:
        if self.options.width:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.options.width)
        if self.options.height:
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.options.height)
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # latest frame, not a stale queue
