"""Exponential backoff with full jitter, so a fleet does not reconnect in lockstep."""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, minimum: float, maximum: float, rng: random.Random | None = None) -> None:
        self.minimum = minimum
        self.maximum = max(minimum, maximum)
        self._rng = rng or random.Random()
        self._attempt = 0

    def next_delay(self) -> float:
        """A delay drawn from [minimum, min(maximum, minimum * 2**attempt)]."""
        ceiling = min(self.maximum, self.minimum * (2 ** self._attempt))
        self._attempt = min(self._attempt + 1, 30)
        return self._rng.uniform(self.minimum, ceiling)

    @property
    def attempt(self) -> int:
        """Delays drawn since the last reset (capped at 30): the exponent of the next ceiling."""
        return self._attempt

    def reset(self) -> None:
        self._attempt = 0
