"""wait_beating: a backoff pause keeps the heartbeat fresh and ends early on stop."""

from __future__ import annotations

import threading

from edge_runtime.supervision.heartbeat import Heartbeats
from edge_runtime.supervision.waiting import wait_beating


def test_pause_keeps_the_heartbeat_fresh() -> None:
    beats = Heartbeats()
    beat = beats.register("source-cam")
    stamps: list[float] = []
    original = beat.beat

    def recording_beat() -> None:
        original()
        stamps.append(beat.last)

    beat.beat = recording_beat  # type: ignore[method-assign]
    assert wait_beating(threading.Event(), 0.3, beat, step=0.05) is False
    # Several beats, none further apart than a step plus scheduling slack of a loaded machine:
    # asserted as "more than a few" rather than a timing bound.
    assert len(stamps) >= 4
    assert beats.stalled(max_age=60) == []


def test_pause_returns_true_when_stopped() -> None:
    stop = threading.Event()
    stop.set()
    beat = Heartbeats().register("x")
    assert wait_beating(stop, 3600, beat) is True  # returns at once, not after an hour


def test_zero_pause_still_beats() -> None:
    beats = Heartbeats()
    beat = beats.register("x")
    beat.last -= 3600  # an hour without a beat: stalled
    assert beats.stalled(max_age=60) == ["x"]
    assert wait_beating(threading.Event(), 0, beat) is False
    assert beats.stalled(max_age=60) == []  # the zero pause beat
