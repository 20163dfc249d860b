"""Gate and preprocess: a frame from the FrameSlot into a job's input buffer.

Runs as the prepare thread of an image pipeline, or inline on the inference thread of a sensor
pipeline (then straight into the input tensor). The model parts are read through
`current_parts` once per frame; the inference thread owns them (a reload replaces them) and
re-prepares a job whose parts are no longer current.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import numpy as np

from edge_runtime.pipeline.assembly import PipelineParts
from edge_runtime.pipeline.gate import MotionGate
from edge_runtime.pipeline.slot import FrameSlot
from edge_runtime.pipeline.stages import END, WAIT, Job, Stages, take
from edge_runtime.pipeline.stats import PipelineStats
from edge_runtime.preprocessing import PreprocessError
from edge_runtime.ratelimit import RateLimitedLogger
from edge_runtime.sources.base import Frame
from edge_runtime.supervision.heartbeat import Heartbeats

logger = logging.getLogger(__name__)


class Preparer:
    def __init__(self, name: str, slot: FrameSlot, gate: MotionGate, stats: PipelineStats,
                 current_parts: Callable[[], PipelineParts]) -> None:
        self.name = name
        self._slot = slot
        self._gate = gate
        self._stats = stats
        self._current_parts = current_parts
        self._warn = RateLimitedLogger(logger)
        self.paused = threading.Event()  # [homeassistant] control: frames are read, not inferred

    def next_frame(self) -> Frame | None:
        """The next frame worth the model's time; None if none came within WAIT (or gated)."""
        frame = self._slot.get(WAIT)
        if frame is None:
            return None
        self._stats.pausing = self.paused.is_set()
        if self._stats.pausing:
            self._stats.paused += 1
            return None
        if not self._gate.should_infer(frame.data):
            self._stats.skipped += 1
            return None
        return frame

    def inferred(self) -> None:
        """The frame just prepared goes to the model: the gate compares the next ones with it."""
        self._gate.inferred()

    def prepare(self, job: Job, frame: Frame, into_tensor: bool) -> bool:
        """Preprocess `frame` into the job's buffer, or straight into the input tensor."""
        parts = self._current_parts()
        spec = parts.model.inputs[0]
        t0 = time.perf_counter()
        try:
            if into_tensor:  # only on the inference thread
                job.geometry = parts.model.fill_input(lambda out: parts.preprocess(frame, out))
            else:
                if job.input.shape != spec.shape or job.input.dtype != spec.dtype:  # reloaded
                    job.input = np.zeros(spec.shape, spec.dtype)
                job.geometry = parts.preprocess(frame, job.input)
        except PreprocessError as exc:
            self._stats.input_errors += 1
            self._warn.warning("input", "pipeline %s: skipping frame %s: %s",
                               self.name, frame.name or frame.index, exc)
            return False
        job.timing_ms["preprocess"] = (time.perf_counter() - t0) * 1e3
        job.frame, job.parts, job.in_tensor = frame, parts, into_tensor
        return True

    def run(self, stages: Stages, stop: threading.Event, heartbeats: Heartbeats) -> None:
        """The prepare thread: a free job, then the next frame into it, then on to inference."""
        beat = heartbeats.register(f"prepare-{self.name}")
        try:
            job: Job | None = None
            while not stop.is_set():
                # A free job first, then the frame: a live source's frame is as fresh as can be.
                if job is None:
                    got = take(stages.free, beat)
                    job = got if isinstance(got, Job) else None
                    continue
                beat.beat()
                frame = self.next_frame()
                if frame is None:
                    if self._slot.finished:
                        break
                    continue
                if self.prepare(job, frame, into_tensor=False):
                    self.inferred()
                    stages.prepared.put(job)
                    job = None
            if job is not None:
                stages.free.put(job)
        finally:
            stages.prepared.put(END)
            heartbeats.unregister(f"prepare-{self.name}")
