"""Deliberate pauses that keep a thread's heartbeat fresh.

A worker that backs off before retrying a camera, a model or the broker is degraded, not hung. If
it slept in one `stop.wait(delay)` its heartbeat would age by the whole delay (up to a minute), the
systemd watchdog would take it for a hung thread and get the process restarted, and a long camera
or broker outage would become a restart loop. `wait_beating` sleeps in short steps and beats
between them.
"""

from __future__ import annotations

import threading
import time

from edge_runtime.supervision.heartbeat import Heartbeat

STEP = 0.5  # seconds between two beats while pausing (the pipeline loops use the same)


def wait_beating(stop: threading.Event, seconds: float, beat: Heartbeat, step: float = STEP) -> bool:
    """Like `stop.wait(seconds)` (True when `stop` was set), beating at least every `step` seconds."""
    deadline = time.monotonic() + seconds
    while True:
        beat.beat()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return stop.is_set()
        if stop.wait(min(step, remaining)):
            return True
