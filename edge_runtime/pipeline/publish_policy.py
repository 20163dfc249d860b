"""Which results are published: every one, or only changes (with a rate cap and a heartbeat).

The decision is taken before the result reaches the publisher, so the publisher's `seq` counts
exactly the published results and stays gap-free.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Hashable

from edge_runtime.config.schema import PublishConfig

Summary = Callable[[dict[str, Any]], Hashable]


class PublishPolicy:
    """`should_publish(fields)` per result; it records the result as published when it says yes.

    `summary` (the task's `Task.summarize`: the top label, the set of labels, ...) is what
    "the result changed" compares in `change` mode.
    """

    def __init__(self, config: PublishConfig, summary: Summary,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._summary = summary
        self._clock = clock
        self._last_time: float | None = None
        self._last_key: Hashable = None

    def should_publish(self, fields: dict[str, Any]) -> bool:
        now = self._clock()
        config = self.config
        if self._last_time is None:
            return self._published(now, fields)
        elapsed = now - self._last_time
        if elapsed < config.min_interval:
            return False
        if config.mode == "every":
            return self._published(now, fields)
        if self._summary(fields) != self._last_key:
            return self._published(now, fields)
        if config.max_interval > 0 and elapsed >= config.max_interval:
            return self._published(now, fields)
        return False

    def _published(self, now: float, fields: dict[str, Any]) -> bool:
        self._last_time = now
        if self.config.mode == "change":
            self._last_key = self._summary(fields)
        return True
