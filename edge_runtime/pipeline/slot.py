"""The hand-over between a source thread and its inference worker: a few frames, never a backlog."""

from __future__ import annotations

import threading
from collections import deque

from edge_runtime.sources.base import Frame


class FrameSlot:
    """Holds at most `capacity` frames (1 for images: a frame is large and should be fresh).

    Live sources replace the oldest unconsumed frame (counted in `dropped`): inference always gets
    the newest frames and no queue grows. File sources wait for room instead, so every file frame
    is processed, as fast as the pipeline goes. Sensor pipelines use a larger capacity so that
    the source and the worker hand over many small windows per thread switch instead of one.
    """

    def __init__(self, live: bool, capacity: int = 1) -> None:
        if capacity < 1:
            raise ValueError("a frame slot holds at least one frame")
        self.live = live
        self.capacity = capacity
        self.dropped = 0
        self._frames: deque[Frame] = deque()
        self._finished = False
        self._cond = threading.Condition()
        self._producer_waiting = False

    def put(self, frame: Frame, timeout: float) -> bool:
        """Offer a frame; False if a file source's frame could not be placed within `timeout`."""
        with self._cond:
            if len(self._frames) >= self.capacity:
                if self.live:
                    self._frames.popleft()
                    self.dropped += 1
                else:
                    self._producer_waiting = True
                    try:
                        if not self._cond.wait_for(
                                lambda: len(self._frames) < self.capacity, timeout):
                            return False
                    finally:
                        self._producer_waiting = False
            self._frames.append(frame)
            if len(self._frames) == 1:  # it was empty: the worker may be waiting
                self._cond.notify_all()
            return True

    def get(self, timeout: float) -> Frame | None:
        with self._cond:
            if not self._frames and not self._finished:
                self._cond.wait(timeout)
            if not self._frames:
                return None
            frame = self._frames.popleft()
            # Wake a waiting producer only once half the room is free: one switch per batch of
            # frames, not one per frame.
            if self._producer_waiting and len(self._frames) <= self.capacity // 2:
                self._cond.notify_all()
            return frame

    @property
    def ready(self) -> bool:
        """A frame can be taken without waiting."""
        return bool(self._frames)  # a racy read is fine: it only decides when to batch

    def finish(self) -> None:
        """The source has ended: `get` drains the last frames, then returns None at once."""
        with self._cond:
            self._finished = True
            self._cond.notify_all()

    @property
    def finished(self) -> bool:
        with self._cond:
            return self._finished and not self._frames
