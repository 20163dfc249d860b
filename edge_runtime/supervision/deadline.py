"""A point in time several steps share: each waits for what is left, not for a fixed timeout.

The daemon's shutdown is the user: systemd SIGKILLs it TimeoutStopSec after SIGTERM, so the joins
of every pipeline, the flush and the broker goodbye draw on one budget instead of each waiting its
own 10 s (issue 12, scenario 2).
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Deadline:
    at: float  # time.monotonic() value

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def remaining(self, keep: float = 0.0) -> float:
        """Seconds left, less `keep` seconds held back for later steps; never negative."""
        return max(0.0, self.at - keep - time.monotonic())
