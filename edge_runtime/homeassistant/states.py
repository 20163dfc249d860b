"""The retained entity state of a pipeline: `{prefix}/{device}/{pipeline}/state`, JSON.

Home Assistant's entities read it with value templates (discovery.py). It is retained, so an
entity created after the last change still gets it, and it is published only when it says
something new: at once when its `key` changes (another top label, another count), otherwise at
most once per `REFRESH_S` (a classification score moving with every frame is not worth a
message per frame to every Home Assistant).

What the state holds, and its key, is the task's (`Task.entity_state`, postprocessing/task.py):
classification `{"ts", "label", "score", "classes"}`, detection `{"ts", "counts", "total",
"zones", "zone_labels"}`, other tasks by default `{"ts", <their field>: value}`.
"""

from __future__ import annotations

import time
from typing import Any, Callable

REFRESH_S = 1.0


class StateThrottle:
    """Decides which states of one pipeline are published (see the module docstring)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._key: Any = object()
        self._sent_at = float("-inf")

    def due(self, key: Any) -> bool:
        now = self._clock()
        if key != self._key or now - self._sent_at >= REFRESH_S:
            self._key, self._sent_at = key, now
            return True
        return False
