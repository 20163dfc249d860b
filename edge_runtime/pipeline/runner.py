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
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from edge_runtime.config.typed import ConfigError
from edge_runtime.model.tflite_model import ModelLoadError, dequantize
from edge_runtime.model.delegates import CPU
from edge_runtime.pipeline.assembly import PipelineParts
from edge_runtime.pipeline.auto_threads import AUTO, ThreadTuner, TunerReport, candidate_counts
from edge_runtime.pipeline.batch import BatchSink, ResultBatch
from edge_runtime.pipeline.cascade import CascadeStats
from edge_runtime.pipeline.gate import MotionGate
from edge_runtime.pipeline.invoke_meter import InvokeMeter
from edge_runtime.pipeline.publish_policy import PublishPolicy
from edge_runtime.pipeline.slot import FrameSlot
from edge_runtime.pipeline.stages import END, Job, Stages
from edge_runtime.postprocessing.base import PostprocessError
from edge_runtime.preprocessing import PreprocessError
from edge_runtime.publishing.backoff import Backoff
from edge_runtime.publishing.payload import result_payload
from edge_runtime.ratelimit import RateLimitedLogger
from edge_runtime.sources.base import EndOfStream, Frame, Source, SourceError
from edge_runtime.sources.registry import SOURCES
from edge_runtime.supervision.heartbeat import Heartbeat, Heartbeats
from edge_runtime.supervision.threads import NamedThread
from edge_runtime.supervision.waiting import wait_beating

logger = logging.getLogger(__name__)

WAIT = 0.5  # seconds any loop blocks before it beats its heartbeat again


SENSOR_SLOT = 64  # windows a sensor file source may read ahead (images: 1 frame, they are big)


@dataclass
class PipelineStats:
    """Counters read by the stats reporter; each is written by one thread only."""

    frames: int = 0  # source: frames read
    results: int = 0  # publish: results published
    input_errors: int = 0  # prepare: frames that could not be preprocessed
    output_errors: int = 0  # publish: outputs that could not be post-processed or encoded
    skipped: int = 0  # prepare: frames the gate kept from the model (no motion)
    suppressed: int = 0  # publish: results the publish policy held back (no change, rate cap)
    failures: int = 0  # inference: model failures (each followed by a reload)
    state: str = "starting"
    last_error: str = ""
    delegate: str = "cpu"  # what the model runs on, e.g. "cpu (edgetpu unavailable)"
    threads: int = 1  # inference: the interpreter's thread count now
    threads_auto: TunerReport | None = None  # inference: with threads = "auto", what it measured
    cascade: CascadeStats = field(default_factory=CascadeStats)  # publish: escalations, stages
    started: float = field(default_factory=time.monotonic)


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
    ) -> None:
        """`overlap`: stage threads (True), one worker (False), None: stage threads for images."""
        self.parts = parts
        self.name = parts.config.name
        self._rebuild = rebuild
        self._device = device
        self._heartbeats = heartbeats
        self._stop = threading.Event()
        self._source: Source = parts.make_source()
        sensor = SOURCES[parts.config.source.type].sensor
        # Live sources keep one frame: inference must see the newest, not a queue of old ones.
        buffered = sensor and not self._source.live
        self.slot = FrameSlot(live=self._source.live, capacity=SENSOR_SLOT if buffered else 1)
        self.stats = PipelineStats(delegate=parts.delegate)
        self._batch = ResultBatch(sink, self.name, self._count_published, self._batch_failed)
        self._warn = RateLimitedLogger(logger)
        self._gate = MotionGate(parts.config.gate, clock)
        self._policy = PublishPolicy(parts.config.publish, clock)
        spec = parts.model.inputs[0]
        self._stages = Stages(spec.shape, spec.dtype)
        self.meter = InvokeMeter()  # the inference thread's time, by cause (stats "interpreter")
        self.stats.threads = parts.model.threads
        self._tuner: ThreadTuner | None = None
        if parts.config.model.threads == AUTO and parts.delegate == CPU:
            self._tuner = ThreadTuner(candidate_counts())
            self.stats.threads_auto = self._tuner.report
        self.overlap = not sensor if overlap is None else overlap
        loops: list[tuple[str, Callable[[], None]]] = [("source", self._source_loop)]
        if self.overlap:
            loops.append(("prepare", self._prepare_loop))
        loops.append(("inference", self._inference_loop))
        if self.overlap:
            loops.append(("publish", self._publish_loop))
        self._threads = [NamedThread(target=loop, name=f"{stage}-{self.name}", daemon=True)
                         for stage, loop in loops]
        logger.debug("pipeline %s: threads %s", self.name, ", ".join(t.name for t in self._threads))

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        for thread in self._threads:
            thread.start()

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
        return self.stats.input_errors + self.stats.output_errors + self._source.input_errors()

    def _get(self, jobs: queue.Queue, beat: Heartbeat) -> Job | None | bool:
        """The next job from `jobs`, END, or False after WAIT seconds (then the caller loops)."""
        beat.beat()
        try:
            return jobs.get(timeout=WAIT)
        except queue.Empty:
            return False

    # -- source thread: read and decode ------------------------------------------------------------
    def _source_loop(self) -> None:
        beat = self._heartbeats.register(f"source-{self.name}")
        backoff = Backoff(1.0, 30.0)
        source, is_open = self._source, False
        interval = 1.0 / source_fps(self.parts) if source_fps(self.parts) > 0 else 0.0
        next_frame_at = 0.0
        try:
            while not self._stop.is_set():
                beat.beat()
                try:
                    if not is_open:
                        source.open()
                        is_open = True
                        backoff.reset()
                        logger.info("pipeline %s: source open", self.name)
                    frame = source.read()
                except EndOfStream:
                    logger.info("pipeline %s: source finished", self.name)
                    break
                except Exception as exc:  # noqa: BLE001 - any source failure is retried, never fatal
                    delay = backoff.next_delay()
                    self.stats.state = "source-retrying"
                    self.stats.last_error = str(exc)
                    logger.warning("pipeline %s: source failed: %s; retrying in %.1fs",
                                   self.name, exc, delay, exc_info=not isinstance(exc, SourceError))
                    source.close()
                    is_open = False
                    wait_beating(self._stop, delay, beat)  # degraded, not hung: keep beating
                    continue
                if frame is None:
                    continue
                if interval:
                    now = time.monotonic()
                    if next_frame_at > now and wait_beating(self._stop, next_frame_at - now, beat):
                        break
                    next_frame_at = max(now, next_frame_at) + interval
                self.stats.frames += 1
                while not self.slot.put(frame, WAIT):
                    beat.beat()
                    if self._stop.is_set():
                        break
        finally:
            source.close()
            self.slot.finish()
            self._heartbeats.unregister(f"source-{self.name}")

    # -- prepare thread: gate, preprocess into a free job's buffer ---------------------------------
    def _prepare_loop(self) -> None:
        beat = self._heartbeats.register(f"prepare-{self.name}")
        stages = self._stages
        try:
            job: Job | None = None
            while not self._stop.is_set():
                # A free job first, then the frame: a live source's frame is as fresh as can be.
                if job is None:
                    got = self._get(stages.free, beat)
                    job = got if isinstance(got, Job) else None
                    continue
                beat.beat()
                frame = self._gated_frame()
                if frame is None:
                    if self.slot.finished:
                        break
                    continue
                if self._prepare(job, frame, into_tensor=False):
                    self._gate.inferred()
                    stages.prepared.put(job)
                    job = None
            if job is not None:
                stages.free.put(job)
        finally:
            stages.prepared.put(END)
            self._heartbeats.unregister(f"prepare-{self.name}")

    def _gated_frame(self) -> Frame | None:
        """The next frame worth the model's time; None if none came within WAIT (or gated)."""
        frame = self.slot.get(WAIT)
        if frame is None:
            return None
        if not self._gate.should_infer(frame.data):
            self.stats.skipped += 1
            return None
        return frame

    def _prepare(self, job: Job, frame: Frame, into_tensor: bool) -> bool:
        """Preprocess `frame` into the job's buffer, or straight into the input tensor."""
        parts = self.parts
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
            self.stats.input_errors += 1
            self._warn.warning("input", "pipeline %s: skipping frame %s: %s",
                               self.name, frame.name or frame.index, exc)
            return False
        job.timing_ms["preprocess"] = (time.perf_counter() - t0) * 1e3
        job.frame, job.parts, job.in_tensor = frame, parts, into_tensor
        return True

    # -- inference thread: the only thread that touches the interpreter ----------------------------
    def _inference_loop(self) -> None:
        beat = self._heartbeats.register(f"inference-{self.name}")
        backoff = Backoff(1.0, 60.0)
        stages = self._stages
        meter = self.meter
        meter.bind_thread()
        inline_job = None if self.overlap else stages.free.get()
        try:
            while not self._stop.is_set():
                if inline_job is None:
                    job = self._get(stages.prepared, beat)
                    meter.mark("wait_input")
                    if job is False:
                        if self._tuner is not None:
                            self._tuner.interrupted()  # no input for a while: not the model's rate
                        continue
                    if job is END:
                        break
                else:  # no stage threads: take, gate and prepare the frame here
                    beat.beat()
                    self._batch.flush_unless(more_coming=self.slot.ready)
                    frame = self._gated_frame()
                    meter.mark("wait_input")
                    if frame is None:
                        if self.slot.finished:
                            break
                        continue
                    job = inline_job
                    prepared = self._prepare(job, frame, into_tensor=True)
                    meter.mark("prepare")
                    if not prepared:
                        continue
                    self._gate.inferred()
                assert isinstance(job, Job)
                if self.stats.state != "running":
                    self.stats.state = "running"
                try:
                    self._infer(job)
                    self._tune()
                    backoff.reset()
                    if inline_job is None:
                        stages.inferred.put(job)
                        meter.mark("hand_off")
                    else:
                        self._publish_guarded(job)
                        meter.mark("publish")
                    continue
                except PreprocessError as exc:  # only when a reload changed the input
                    self.stats.input_errors += 1
                    self._warn.warning("input", "pipeline %s: skipping frame: %s", self.name, exc)
                except Exception as exc:  # noqa: BLE001 - a model failure must not end the daemon
                    self.stats.failures += 1
                    self.stats.state = "model-retrying"
                    self.stats.last_error = str(exc)
                    logger.exception("pipeline %s: inference failed; reloading the model", self.name)
                    self._reload(backoff, beat)
                    meter.idle()
                if inline_job is None:
                    stages.free.put(job)
        finally:
            meter.close()
            if inline_job is not None:
                self._batch.flush()
            self.stats.state = "stopped" if self._stop.is_set() else "finished"
            stages.inferred.put(END)
            self._heartbeats.unregister(f"inference-{self.name}")

    def _infer(self, job: Job) -> None:
        parts = self.parts
        model = parts.model
        assert job.frame is not None
        if job.parts is not parts:  # prepared before a reload: redo it for the new model
            frame = job.frame
            job.geometry = model.fill_input(lambda out: parts.preprocess(frame, out))
            job.parts = parts
        elif not job.in_tensor:
            # set_tensor copies holding the GIL; np.copyto of a large array would release it
            # and then queue for it again behind the publish and network threads (bench_video).
            model.set_input(0, job.input)
        meter = self.meter
        meter.mark("copy_in")
        meter.invoke_starting()
        model.invoke()
        job.timing_ms["inference"] = meter.invoke_ended() * 1e3
        # get_tensor copies: the copies travel with the job while the interpreter runs on.
        job.outputs = [model.raw_output(i) for i in range(len(model.outputs))]
        meter.mark("copy_out")

    def _tune(self) -> None:
        """threads = "auto": count this invoke; switch the interpreter when the tuner says so."""
        tuner = self._tuner
        if tuner is None or tuner.done:
            return
        switch = tuner.invoked()
        if switch is not None:
            self.parts.model.set_threads(switch)
            self.stats.threads = switch
            self.meter.idle()  # the new interpreter's set-up is no gap of the pipeline's
        if tuner.done:
            logger.info("pipeline %s: threads %s", self.name, tuner.report.describe())

    def _reload(self, backoff: Backoff, beat: Heartbeat) -> None:
        while not self._stop.is_set():
            if wait_beating(self._stop, backoff.next_delay(), beat):
                return
            beat.beat()
            try:
                self.parts = self._rebuild()
                self.stats.delegate = self.parts.delegate
                if self._tuner is not None:  # a new model starts with the initial count
                    self._tuner.interrupted()
                    self.parts.model.set_threads(self._tuner.current)
                self.stats.threads = self.parts.model.threads
                logger.info("pipeline %s: model reloaded", self.name)
                return
            except (ConfigError, ModelLoadError) as exc:
                self.stats.last_error = str(exc)
                logger.error("pipeline %s: cannot reload: %s", self.name, exc)

    # -- publish thread: post-process, decide, publish ---------------------------------------------
    def _publish_loop(self) -> None:
        beat = self._heartbeats.register(f"publish-{self.name}")
        stages = self._stages
        try:
            # No stop check: inference puts END when it stops, so what it inferred is published.
            while True:
                job = self._get(stages.inferred, beat)
                if job is False:
                    continue
                if job is END:
                    break
                assert isinstance(job, Job)
                self._publish_guarded(job)
                stages.free.put(job)
                self._batch.flush_unless(more_coming=not stages.inferred.empty())
        finally:
            self._batch.flush()
            self._heartbeats.unregister(f"publish-{self.name}")

    def _publish_guarded(self, job: Job) -> None:
        frame = job.frame
        try:
            self._publish(job)
        except PostprocessError as exc:
            self.stats.output_errors += 1
            self._warn.warning("output", "pipeline %s: no result for frame %s: %s", self.name,
                               frame.name or frame.index if frame else "?", exc)
        finally:
            job.frame, job.outputs = None, []

    def _publish(self, job: Job) -> None:
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
                                                  self.stats.cascade)
        if not self._policy.should_publish(fields):
            self.stats.suppressed += 1
            return
        if cascade is not None:
            cascade.run_stages(frame, fields, timing_ms, self.stats.cascade)
        source: dict[str, Any] = {"frame": frame.index}
        if frame.data.dtype.kind == "u":  # an image; sensor windows have no pixel size
            source.update(width=frame.width, height=frame.height)
        if frame.name:
            source["name"] = frame.name
        body = result_payload(
            device=self._device,
            pipeline=self.name,
            captured=frame.captured,
            source=source,
            model=model_info,
            timing_ms=timing_ms,
            task_fields=fields,
        )
        self._batch.add(body)

    def _count_published(self, count: int) -> None:
        self.stats.results += count

    def _batch_failed(self, exc: Exception) -> None:
        self.stats.output_errors += 1
        self._warn.warning("publish", "pipeline %s: a result could not be published: %r",
                           self.name, exc)


def source_fps(parts: PipelineParts) -> float:
    return float(getattr(parts.config.source, "fps", 0.0) or 0.0)
