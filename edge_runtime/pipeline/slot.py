"""The hand-over between a source thread and its inference worker: one frame, never a backlog."""

from __future__ import annotations

import threading

from edge_runtime.sources.base import Frame


class FrameSlot:
    """Holds at most one frame.

    Live sources replace an unconsumed frame (counted in `dropped`): inference always gets the
    newest frame and no queue grows. File sources wait for the slot instead, so every file frame
    is processed, as fast as the pipeline goes.
    """

    def __init__(self, live: bool) -> None:
        self.live = live
        self.dropped = 0
        self._frame: Frame | None = None
        self._finished = False
        self._cond = threading.Condition()

    def put(self, frame: Frame, timeout: float) -> bool:
        """Offer a frame; False if a file source's frame could not be placed within `timeout`."""
        with self._cond:
            if self._frame is not None:
                if self.live:
                    self.dropped += 1
                elif not self._cond.wait_for(lambda: self._frame is None, timeout):
                    return False
            self._frame = frame
            self._cond.notify_all()
            return True

    def get(self, timeout: float) -> Frame | None:
        with self._cond:
            if self._frame is None and not self._finished:
                self._cond.wait(timeout)
            frame, self._frame = self._frame, None
            if frame is not None:
                self._cond.notify_all()
            return frame

    def finish(self) -> None:
        """The source has ended: `get` drains the last frame, then returns None at once."""
        with self._cond:
            self._finished = True
            self._cond.notify_all()

    @property
    def finished(self) -> bool:
        with self._cond:
            return self._finished and self._frame is None
