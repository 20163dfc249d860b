"""The hand-over between a pipeline's prepare, inference and publish threads: reused jobs.

A fixed set of `Job`s circulates between prepare and inference: free -> prepared (input written
into the job's buffer) -> free again as soon as its outputs are copied out of the interpreter.
What the publish thread needs (frame, outputs, geometry, timings) travels on as an `Inferred`, so
a job never waits for a result's post-processing or its outbox commit (an fsync): the interpreter
keeps getting input while the publish thread commits. Up to PUBLISH_BACKLOG results wait for the
publish thread (a live source: LIVE_PUBLISH_BACKLOG, as each result waiting makes the published
ones older when publishing is the slow part); then inference waits too (bounded memory: each
holds its frame). With three jobs
one can be prepared while one is in the interpreter, and no input buffer is allocated per frame.
The queues are FIFO and each stage has one thread, so frames keep their order.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_runtime.preprocessing import Geometry
from edge_runtime.sources.base import Frame
from edge_runtime.supervision.heartbeat import Heartbeat

JOBS = 3  # prepare, invoke, and one prepared ahead; more would only add latency
PUBLISH_BACKLOG = 4  # inferred results waiting for the publish thread (one outbox commit's worth)
LIVE_PUBLISH_BACKLOG = 1  # live sources: fresh results over a few more frames/s
WAIT = 0.5  # seconds any stage loop blocks before it beats its heartbeat again


@dataclass
class Job:
    """One frame on its way through the stages; its buffers are reused for the next frame."""

    input: np.ndarray  # the model input, prepared off the inference thread
    parts: Any = None  # the PipelineParts that prepared it (a reload may replace them)
    frame: Frame | None = None
    geometry: Geometry | None = None
    in_tensor: bool = False  # prepared straight into the input tensor (no stage threads)
    outputs: list[np.ndarray] = field(default_factory=list)  # raw output tensors, copied
    timing_ms: dict[str, float] = field(default_factory=dict)

    def hand_over(self) -> Inferred:
        """What publishing needs from this job; the job (its input buffer) is free again."""
        inferred = Inferred(self.parts, self.frame, self.geometry, self.outputs, self.timing_ms)
        self.frame, self.outputs, self.timing_ms = None, [], {}
        return inferred


@dataclass
class Inferred:
    """One frame's copied outputs on their way to the publish thread."""

    parts: Any
    frame: Frame | None
    geometry: Geometry | None
    outputs: list[np.ndarray]
    timing_ms: dict[str, float]


END = None  # put into a queue by a stage that has finished: the next stage finishes too


class Stages:
    """The three queues between the threads; `free` starts with JOBS jobs."""

    def __init__(self, input_shape: tuple[int, ...], input_dtype: np.dtype,
                 backlog: int = PUBLISH_BACKLOG) -> None:
        self.free: queue.Queue[Job] = queue.Queue()
        self.prepared: queue.Queue[Job | None] = queue.Queue()
        self.inferred: queue.Queue[Inferred | None] = queue.Queue(backlog)
        for _ in range(JOBS):
            self.free.put(Job(np.zeros(input_shape, input_dtype)))


def take(jobs: queue.Queue[Any], beat: Heartbeat) -> Any:
    """The next job from `jobs`, END, or False after WAIT seconds (then the caller loops)."""
    beat.beat()
    try:
        return jobs.get(timeout=WAIT)
    except queue.Empty:
        return False


def give(items: queue.Queue[Any], item: Any, beat: Heartbeat) -> None:
    """Put `item` into a bounded queue, beating while the next stage makes room."""
    while True:
        beat.beat()
        try:
            items.put(item, timeout=WAIT)
            return
        except queue.Full:
            continue
