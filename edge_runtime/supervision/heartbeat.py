"""Progress tracking for the daemon's long-lived threads.

Every worker loop calls `Heartbeat.beat()` once per iteration, including iterations that only
waited (with a timeout) for input that did not come: a camera or broker outage is degraded, not
hung. A thread stuck inside a call (a hung interpreter) stops beating, and `Heartbeats.stalled()`
names it, so the systemd watchdog can stop pinging and get the process restarted.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass
class Heartbeat:
    name: str
    last: float = field(default_factory=time.monotonic)

    def beat(self) -> None:
        self.last = time.monotonic()  # a float store is atomic under the GIL


class Heartbeats:
    """The set of heartbeats the daemon watches; threads register when they start."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._beats: dict[str, Heartbeat] = {}

    def register(self, name: str) -> Heartbeat:
        with self._lock:
            beat = Heartbeat(name)
            self._beats[name] = beat
            return beat

    def unregister(self, name: str) -> None:
        with self._lock:
            self._beats.pop(name, None)

    def stalled(self, max_age: float) -> list[str]:
        """Names of the threads that have not beaten for more than `max_age` seconds."""
        now = time.monotonic()
        with self._lock:
            return sorted(b.name for b in self._beats.values() if now - b.last > max_age)
