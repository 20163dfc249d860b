"""A pipeline's counters, read by the stats reporter and the status line.

Each field has exactly one writer thread, named first in the comment beside it (`source`,
`prepare`, `inference`, `publish`; anything else: set once before the threads start), and
`tests/test_thread_ownership.py` checks that every write sits in that thread's module. Readers
on other threads read plain ints and strings, which is atomic in CPython, and may see a value
one step old. A container that grows while read (CascadeStats.stages) is copied under its lock:
a copy is not one step, since the garbage collector may run a finalizer, and so switch threads, in
the middle of it; TunerReport.rates keeps the keys it is built with. "prepare" is the prepare
thread in an image pipeline and the inference thread in a sensor pipeline (which has no prepare
thread), so it is one thread either way; likewise "publish".
What else each thread owns: docs/ARCHITECTURE.md, "Threads and what they own".
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from edge_runtime.pipeline.auto_threads import TunerReport
from edge_runtime.pipeline.cascade import CascadeStats


@dataclass
class PipelineStats:
    frames: int = 0  # source: frames read and handed to the pipeline (not one dropped at stop)
    results: int = 0  # publish: results published
    input_errors: int = 0  # prepare: frames that could not be preprocessed
    reprepare_errors: int = 0  # inference: frames that failed when re-prepared after a reload
    output_errors: int = 0  # publish: outputs that could not be post-processed or encoded
    skipped: int = 0  # prepare: frames the gate kept from the model (no motion)
    suppressed: int = 0  # publish: results the publish policy held back (no change, rate cap)
    paused: int = 0  # prepare: frames not inferred while paused by command
    pausing: bool = False  # prepare: paused by command ([homeassistant] control)
    failures: int = 0  # inference: model failures (each followed by a reload)
    model_state: str = "starting"  # inference: starting, running, model-retrying, stopped, finished
    source_retrying: bool = False  # source: the source failed and waits for its next attempt
    source_failures: int = 0  # source: reads or opens that failed (each followed by a backoff)
    source_reconnects: int = 0  # source: recoveries (frames again after failures)
    delegate: str = "cpu"  # inference (at a reload): what the model runs on, e.g. "cpu (edgetpu unavailable)"
    threads: int = 1  # inference: the interpreter's thread count now
    threads_auto: TunerReport | None = None  # inference: with threads = "auto", what it measured
    cpus: tuple[int, ...] = ()  # once: the CPUs the inference thread has to itself (model.cpus)
    cascade: CascadeStats = field(default_factory=CascadeStats)  # publish: escalations, stages
    started: float = field(default_factory=time.monotonic)  # once: before any thread runs

    @property
    def state(self) -> str:
        """One word for the stats: the model's state, unless the source is the problem."""
        if self.source_retrying and self.model_state not in ("stopped", "finished"):
            return "source-retrying"
        if self.pausing and self.model_state not in ("stopped", "finished"):
            return "paused"
        return self.model_state

    @property
    def bad_inputs(self) -> int:
        return self.input_errors + self.reprepare_errors + self.output_errors
