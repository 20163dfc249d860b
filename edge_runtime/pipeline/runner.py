"""Running one pipeline: four overlapping stage threads, each supervised.

    source ─FrameSlot─► prepare ─► inference ─► publish ─► sink (MQTT)
    read/decode         gate,       copy in,     postprocess, publish
                        preprocess  invoke,      policy, payload + seq
                        (job buffer) copy out

While the interpreter runs frame N (the C++ invoke releases the GIL), frame N+1 is decoded and
preprocessed into a job buffer and frame N-1 is post-processed and published, so the interpreter
waits for nothing that could have been done earlier. `invoke` stays on one thread with one
interpreter. Jobs (and their input buffers) are reused: nothing input-sized is allocated per frame.

Image pipelines overlap because decoding, resizing and invoke all run outside the GIL (OpenCV,
the TFLite C++ kernels). A sensor window's preprocessing is a few microseconds of numpy, and the
hand-offs would cost as much as they save, so sensor pipelines run prepare, invoke and publish one
after the other on the inference thread (source thread + one worker), and a sensor file source
reads up to SENSOR_SLOT windows ahead so the two threads switch once per batch, not per window.

Results go to the outbox in batches (batch.py): while the next frame is already waiting, a result
waits (at most 64 results or 50 ms) to share the next one's commit and fsync.

A broken source (camera unplugged, file gone) or model (interpreter error) is retried with
backoff inside its own pipeline; other pipelines never notice.

This module wires the stages and owns their threads; each stage is its own module:
source_stage.py, prepare_stage.py, inference_stage.py, publish_stage.py.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from edge_runtime.config.schema import RetryConfig
from edge_runtime.pipeline.assembly import PipelineParts
from edge_runtime.pipeline.batch import BatchSink
from edge_runtime.pipeline.gate import MotionGate
from edge_runtime.pipeline.inference_stage import InferenceStage
from edge_runtime.pipeline.invoke_meter import InvokeMeter
from edge_runtime.pipeline.observer import ResultObserver
from edge_runtime.pipeline.prepare_stage import Preparer
from edge_runtime.pipeline.publish_policy import PublishPolicy
from edge_runtime.pipeline.publish_stage import ResultPublisher
from edge_runtime.pipeline.slot import FrameSlot
from edge_runtime.pipeline.source_stage import SourceStage
from edge_runtime.pipeline.stages import LIVE_PUBLISH_BACKLOG, PUBLISH_BACKLOG, Stages
from edge_runtime.pipeline.stats import PipelineStats
from edge_runtime.supervision.heartbeat import Heartbeats
from edge_runtime.supervision.threads import NamedThread

logger = logging.getLogger(__name__)

SENSOR_SLOT = 64  # windows a sensor file source may read ahead (images: 1 frame, they are big)


class PipelineRunner:
    def __init__(
        self,
        parts: PipelineParts,
        rebuild: Callable[[], PipelineParts],
        sink: BatchSink,
        device: str,
        heartbeats: Heartbeats,
        clock: Callable[[], float] = time.monotonic,
        overlap: bool | None = None,
        observer: ResultObserver | None = None,
        retry: RetryConfig | None = None,
    ) -> None:
        """`overlap`: stage threads (True), one worker (False), None: stage threads for images."""
        self.name = parts.config.name
        self._heartbeats = heartbeats
        self._stop = threading.Event()
        self.stats = PipelineStats(delegate=parts.delegate, cpus=tuple(parts.config.model.cpus))
        source = parts.make_source()
        traits = parts.source
        windowed = traits.kind.windowed
        # Live sources keep one frame: inference must see the newest, not a queue of old ones.
        buffered = windowed and not traits.live
        self.slot = FrameSlot(live=traits.live, capacity=SENSOR_SLOT if buffered else 1)
        retry = retry or RetryConfig()  # [retry] source and model
        self._source = SourceStage(self.name, source, self.slot, self.stats, heartbeats,
                                   self._stop, traits.max_fps, retry.source)
        self._inference = InferenceStage(self.name, parts, rebuild, self.stats, retry.model)
        self._preparer = Preparer(self.name, self.slot, MotionGate(parts.config.gate, clock),
                                  self.stats, lambda: self._inference.parts)
        policy = PublishPolicy(parts.config.publish, parts.task_plugin.summarize, clock)
        self._publisher = ResultPublisher(self.name, device, sink, policy, self.stats, observer)
        spec = parts.model.inputs[0]
        self._stages = Stages(spec.shape, spec.dtype,
                              LIVE_PUBLISH_BACKLOG if traits.live else PUBLISH_BACKLOG)
        self.overlap = not windowed if overlap is None else overlap
        loops: list[tuple[str, Callable[[], None]]] = [("source", self._source.run)]
        if self.overlap:
            loops.append(("prepare", lambda: self._preparer.run(self._stages, self._stop,
                                                                heartbeats)))
        loops.append(("inference", lambda: self._inference.run(
            self._stages, self.slot, self._preparer, self._publisher, not self.overlap,
            self._stop, heartbeats)))
        if self.overlap:
            loops.append(("publish", lambda: self._publisher.run(self._stages, heartbeats)))
        # The inference thread keeps the normal policy; the others yield to it (threads.py).
        self._threads = [NamedThread(target=loop, name=f"{stage}-{self.name}", daemon=True,
                                     batch=stage != "inference")
                         for stage, loop in loops]
        logger.debug("pipeline %s: threads %s", self.name, ", ".join(t.name for t in self._threads))

    @property
    def meter(self) -> InvokeMeter:
        """The inference thread's time, by cause (stats "interpreter")."""
        return self._inference.meter

    @property
    def parts(self) -> PipelineParts:
        """The parts in use (the inference thread replaces them on a reload)."""
        return self._inference.parts

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def pause(self, paused: bool) -> None:
        """Stop (or resume) inferring; the source keeps running so the frames stay fresh."""
        if paused:
            self._preparer.paused.set()
        else:
            self._preparer.paused.clear()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                logger.warning("thread %s did not stop within %.0fs", thread.name, timeout)

    @property
    def finished(self) -> bool:
        """Every stage has ended (file source exhausted and every frame published, or stopped)."""
        return not any(thread.is_alive() for thread in self._threads)

    @property
    def thread_names(self) -> list[str]:
        return [thread.name for thread in self._threads]

    @property
    def dropped(self) -> int:
        return self.slot.dropped

    def input_errors(self) -> int:
        return self.stats.bad_inputs + self._source.source.input_errors()
