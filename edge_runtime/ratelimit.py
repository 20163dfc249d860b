"""Logging that cannot flood the journal when an input goes bad at frame rate."""

from __future__ import annotations

import logging
import threading
import time


class RateLimitedLogger:
    """Logs a warning for a key at most once per `interval` seconds, then says how many it held back."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        self._logger = logger
        self._interval = interval
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warning(self, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(key, -self._interval) < self._interval:
                self._held[key] = self._held.get(key, 0) + 1
                return
            held = self._held.pop(key, 0)
            self._last[key] = now
        if held:
            message += " (%d similar messages suppressed)"
            args = (*args, held)
        self._logger.warning(message, *args)
