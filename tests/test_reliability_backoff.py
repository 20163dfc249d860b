"""Reconnect backoff: exponential ceiling, full jitter, so a fleet does not reconnect in lockstep."""

from __future__ import annotations

import random
import statistics

from edge_runtime.supervision.backoff import Backoff


def test_the_ceiling_doubles_up_to_the_maximum_and_reset_starts_over():
    backoff = Backoff(1.0, 60.0, random.Random(1))
    delays = [backoff.next_delay() for _ in range(12)]
    ceilings = [min(60.0, 2.0 ** i) for i in range(12)]
    assert all(1.0 <= d <= c for d, c in zip(delays, ceilings))
    backoff.reset()
    assert backoff.next_delay() == 1.0  # the first ceiling is the minimum itself


def test_a_fleet_spreads_its_reconnects():
    """100 devices lose the same broker at the same moment: their retries must not coincide."""
    fleet = [Backoff(1.0, 60.0, random.Random(seed)) for seed in range(100)]
    for _ in range(6):  # six failed attempts each: ceilings 1, 2, 4, 8, 16, 32
        for device in fleet:
            device.next_delay()
    seventh = [device.next_delay() for device in fleet]  # drawn from [1, 60]
    assert len({round(d, 1) for d in seventh}) > 80  # hardly two devices within 0.1 s
    assert statistics.pstdev(seventh) > 10  # spread over the whole window, not clustered
    assert min(seventh) >= 1.0 and max(seventh) <= 60.0
