"""Post-process, decide, hand over: a frame's copied outputs into a result in the outbound batch.

Runs as the publish thread of an image pipeline, or inline on the inference thread of a sensor
pipeline. Results go to the sink in batches (batch.py).
"""

from __future__ import annotations

import logging
import time

from edge_runtime.model.tflite_model import dequantize
from edge_runtime.pipeline.batch import BatchSink, ResultBatch
from edge_runtime.pipeline.observer import ResultObserver
from edge_runtime.pipeline.publish_policy import PublishPolicy
from edge_runtime.pipeline.result import result_body
from edge_runtime.pipeline.stages import END, Inferred, Stages, take
from edge_runtime.pipeline.stats import PipelineStats
from edge_runtime.postprocessing.base import PostprocessError
from edge_runtime.ratelimit import RateLimitedLogger
from edge_runtime.supervision.heartbeat import Heartbeats

logger = logging.getLogger(__name__)


class ResultPublisher:
    def __init__(self, name: str, device: str, sink: BatchSink, policy: PublishPolicy,
                 stats: PipelineStats, observer: ResultObserver | None = None) -> None:
        self.name = name
        self.observer = observer  # tracking, events, entity state, snapshots (observer.py)
        self._device = device
        self._policy = policy
        self._stats = stats
        self._warn = RateLimitedLogger(logger)
        self.batch = ResultBatch(sink, name, self._count_published, self._batch_failed)

    def publish(self, job: Inferred) -> None:
        """Post-process the frame's outputs and batch the result (unless the policy holds it)."""
        frame = job.frame
        try:
            self._publish(job)
        except PostprocessError as exc:
            self._stats.output_errors += 1
            self._warn.warning("output", "pipeline %s: no result for frame %s: %s", self.name,
                               frame.name or frame.index if frame else "?", exc)

    def _publish(self, job: Inferred) -> None:
        parts, frame = job.parts, job.frame
        assert frame is not None
        model = parts.model
        t0 = time.perf_counter()
        outputs = [dequantize(raw, spec) for raw, spec in zip(job.outputs, model.outputs)]
        fields = parts.postprocess(outputs, job.geometry)
        job.timing_ms["postprocess"] = (time.perf_counter() - t0) * 1e3
        model_info = {"name": model.name, "sha256": model.sha256}
        timing_ms = dict(job.timing_ms)
        cascade = parts.cascade  # escalation, stages on the detections (cascade.py)
        if cascade is not None:
            fields, model_info = cascade.escalate(frame, fields, model_info, timing_ms,
                                                  self._stats.cascade)
        if self.observer is not None:
            self.observer.observe(frame, fields)
        if not self._policy.should_publish(fields):
            self._stats.suppressed += 1
            return
        if cascade is not None:
            cascade.run_stages(frame, fields, timing_ms, self._stats.cascade)
        image = not parts.source.kind.windowed
        self.batch.add(result_body(self._device, self.name, frame, image, model_info, timing_ms,
                                   fields))

    def run(self, stages: Stages, heartbeats: Heartbeats) -> None:
        """The publish thread: until inference puts END, so what it inferred is published."""
        beat = heartbeats.register(f"publish-{self.name}")
        try:
            while True:  # no stop check: inference puts END when it stops
                job = take(stages.inferred, beat)
                if job is False:
                    continue
                if job is END:
                    break
                assert isinstance(job, Inferred)
                self.publish(job)
                self.batch.flush_unless(more_coming=not stages.inferred.empty())
        finally:
            self.close()
            heartbeats.unregister(f"publish-{self.name}")

    def close(self) -> None:
        """The stage ends: tracked objects end, the batch goes out."""
        if self.observer is not None:
            self.observer.close()
        self.batch.flush()

    def _count_published(self, count: int) -> None:
        self._stats.results += count

    def _batch_failed(self, exc: Exception) -> None:
        self._stats.output_errors += 1
        self._warn.warning("publish", "pipeline %s: a result could not be published: %r",
                           self.name, exc)
