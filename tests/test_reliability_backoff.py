"""Reconnect backoff: exponential ceiling, full jitter, so a fleet does not reconnect in lockstep;
the source thread starts it over only when a reopened source delivers."""

from __future__ import annotations

import random
import statistics
import threading

import numpy as np

from edge_runtime.config.schema import BackoffConfig
from edge_runtime.pipeline.slot import FrameSlot
from edge_runtime.pipeline.source_stage import SourceStage
from edge_runtime.pipeline.stats import PipelineStats
from edge_runtime.sources.base import EndOfStream, Frame, Source, SourceError
from edge_runtime.supervision.backoff import Backoff
from edge_runtime.supervision.heartbeat import Heartbeats


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


class ScriptedSource(Source):
    """Opens every time; each read plays the next step of a script (a frame, or a failure)."""

    def __init__(self, steps: list[str]) -> None:
        self.steps = list(steps)
        self.stage: SourceStage | None = None
        self.attempt_at_open: list[int] = []

    def open(self) -> None:
        assert self.stage is not None
        self.attempt_at_open.append(self.stage.backoff.attempt)

    def read(self) -> Frame | None:
        step = self.steps.pop(0) if self.steps else "end"
        if step == "fail":
            raise SourceError("stalled")
        if step == "end":
            raise EndOfStream
        return Frame(np.zeros((2, 2, 3), np.uint8), 0)


def test_source_backoff_starts_over_at_a_frame_not_at_an_open():
    """A camera that accepts the connection and then sends nothing must back off further each
    time: resetting when `open` succeeds would retry it at the minimum delay forever."""
    source = ScriptedSource(["fail", "fail", "fail", "fail", "frame", "frame", "fail", "frame"])
    stats = PipelineStats()
    stage = SourceStage("p", source, FrameSlot(live=True), stats, Heartbeats(), threading.Event(),
                        fps=0, retry=BackoffConfig(min_delay=0.001, max_delay=0.004))
    source.stage = stage
    stage.run()  # in this thread: returns at the end of the script
    # Opens 2-5 follow failures with no frame between: the ceiling keeps growing. Open 6
    # follows a failure after frames: it starts from the first step again.
    assert source.attempt_at_open == [0, 1, 2, 3, 4, 1]
    assert (stats.frames, stats.source_failures, stats.source_reconnects) == (3, 5, 2)
    assert not stats.source_retrying
