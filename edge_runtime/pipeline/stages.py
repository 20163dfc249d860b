"""The hand-over between a pipeline's prepare, inference and publish threads: reused jobs.

A fixed set of `Job`s circulates: free -> prepared (input written into the job's buffer) ->
inferred (outputs copied out of the interpreter) -> free again. With three jobs one can be
prepared while one is in the interpreter and one is being published, and no input buffer is
allocated per frame. The queues are FIFO and each stage has one thread, so frames keep their order.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_runtime.preprocessing import Geometry
from edge_runtime.sources.base import Frame
from edge_runtime.supervision.heartbeat import Heartbeat

JOBS = 3  # one per stage (prepare, invoke, publish); more would only add latency
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


END = None  # put into a queue by a stage that has finished: the next stage finishes too


class Stages:
    """The three queues between the threads; `free` starts with JOBS jobs."""

    def __init__(self, input_shape: tuple[int, ...], input_dtype: np.dtype) -> None:
        self.free: queue.Queue[Job] = queue.Queue()
        self.prepared: queue.Queue[Job | None] = queue.Queue()
        self.inferred: queue.Queue[Job | None] = queue.Queue()
        for _ in range(JOBS):
            self.free.put(Job(np.zeros(input_shape, input_dtype)))


def take(jobs: queue.Queue[Job | None], beat: Heartbeat) -> Job | None | bool:
    """The next job from `jobs`, END, or False after WAIT seconds (then the caller loops)."""
    beat.beat()
    try:
        return jobs.get(timeout=WAIT)
    except queue.Empty:
        return False
