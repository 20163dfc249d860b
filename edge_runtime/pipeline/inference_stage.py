"""The inference thread: the only thread that touches the interpreter.

It copies a prepared job's input into the tensor, invokes and copies the outputs out, so the
interpreter runs on while the outputs are published; the job goes back to the prepare thread
right then, not after the result's outbox commit. It owns the pipeline's parts: a model
failure rebuilds them (reloads the file) with backoff, and a job prepared for the old parts is
prepared again for the new ones. Without stage threads (sensor pipelines) it also takes, gates,
prepares and publishes each frame itself. It also times itself (`meter`, invoke_meter.py) and,
with threads = "auto", tries thread counts on the live input (auto_threads.py).
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from edge_runtime.config.schema import BackoffConfig, RetryConfig
from edge_runtime.config.typed import ConfigError
from edge_runtime.model.delegates import CPU
from edge_runtime.model.tflite_model import ModelLoadError
from edge_runtime.pipeline.assembly import PipelineParts
from edge_runtime.pipeline.auto_threads import AUTO, ThreadTuner, candidate_counts
from edge_runtime.pipeline.invoke_meter import InvokeMeter
from edge_runtime.pipeline.prepare_stage import Preparer
from edge_runtime.pipeline.publish_stage import ResultPublisher
from edge_runtime.pipeline.slot import FrameSlot
from edge_runtime.pipeline.stages import END, Job, Stages, give, take
from edge_runtime.pipeline.stats import PipelineStats
from edge_runtime.preprocessing import PreprocessError
from edge_runtime.supervision.backoff import Backoff
from edge_runtime.supervision.cpus import describe, run_on
from edge_runtime.ratelimit import RateLimitedLogger
from edge_runtime.supervision.heartbeat import Heartbeat, Heartbeats
from edge_runtime.supervision.waiting import wait_beating

logger = logging.getLogger(__name__)


class InferenceStage:
    def __init__(self, name: str, parts: PipelineParts, rebuild: Callable[[], PipelineParts],
                 stats: PipelineStats, retry: BackoffConfig | None = None) -> None:
        self.name = name
        self._retry = retry or RetryConfig().model  # [retry] model: reloads after failures
        self.parts = parts  # written by this thread only (a reload); others read it whole
        self._rebuild = rebuild
        self._stats = stats
        self._warn = RateLimitedLogger(logger)
        self.meter = InvokeMeter()  # this thread's time, by cause (stats "interpreter")
        stats.threads = parts.model.threads
        self._tuner: ThreadTuner | None = None
        if parts.config.model.threads == AUTO and parts.delegate == CPU:
            # with CPUs of its own, more threads than those CPUs would only take turns
            self._tuner = ThreadTuner(candidate_counts(len(parts.config.model.cpus) or None))
            stats.threads_auto = self._tuner.report

    def run(self, stages: Stages, slot: FrameSlot, preparer: Preparer,
            publisher: ResultPublisher, inline: bool, stop: threading.Event,
            heartbeats: Heartbeats) -> None:
        """`inline`: no prepare/publish threads; this thread prepares and publishes too."""
        beat = heartbeats.register(f"inference-{self.name}")
        backoff = Backoff(self._retry.min_delay, self._retry.max_delay)
        stats = self._stats
        self._move_to_own_cpus()
        meter = self.meter
        meter.bind_thread()
        inline_job = stages.free.get() if inline else None
        try:
            while not stop.is_set():
                if inline_job is None:
                    job = take(stages.prepared, beat)
                    meter.mark("wait_input")
                    if job is False:
                        if self._tuner is not None:
                            self._tuner.interrupted()  # no input for a while: not the model's rate
                        continue
                    if job is END:
                        break
                else:  # no stage threads: take, gate and prepare the frame here
                    beat.beat()
                    publisher.batch.flush_unless(more_coming=slot.ready)
                    frame = preparer.next_frame()
                    meter.mark("wait_input")
                    if frame is None:
                        if slot.finished:
                            break
                        continue
                    job = inline_job
                    prepared = preparer.prepare(job, frame, into_tensor=True)
                    meter.mark("prepare")
                    if not prepared:
                        continue
                    preparer.inferred()
                assert isinstance(job, Job)
                if stats.model_state != "running":
                    stats.model_state = "running"
                try:
                    self._infer(job)
                    self._tune()
                    backoff.reset()
                    if inline_job is None:
                        # The job goes back at once: its next frame need not wait for this
                        # result's post-processing and outbox commit (stages.py).
                        inferred = job.hand_over()
                        stages.free.put(job)
                        give(stages.inferred, inferred, beat)
                        meter.mark("hand_off")
                    else:
                        publisher.publish(job.hand_over())
                        meter.mark("publish")
                    continue
                except PreprocessError as exc:  # only when a reload changed the input
                    stats.reprepare_errors += 1
                    self._warn.warning("input", "pipeline %s: skipping frame: %s", self.name, exc)
                except Exception:  # noqa: BLE001 - a model failure must not end the daemon
                    stats.failures += 1
                    stats.model_state = "model-retrying"
                    logger.exception("pipeline %s: inference failed; reloading the model", self.name)
                    self._reload(backoff, beat, stop)
                    meter.idle()
                if inline_job is None:
                    stages.free.put(job)
        finally:
            meter.close()
            if inline_job is not None:
                publisher.close()
            stats.model_state = "stopped" if stop.is_set() else "finished"
            give(stages.inferred, END, beat)
            heartbeats.unregister(f"inference-{self.name}")

    def _move_to_own_cpus(self) -> None:
        """`model.cpus`: this thread runs there (supervision/cpus.py); an interpreter with
        worker threads is re-created here so that they run there too."""
        cpus = self.parts.config.model.cpus
        if not cpus:
            return
        run_on(cpus)
        model = self.parts.model
        if model.threads > 1 and self.parts.delegate == CPU:
            model.set_threads(model.threads)
        logger.info("pipeline %s: inference on CPU(s) %s", self.name, describe(cpus))

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
            self._stats.threads = switch
            self.meter.idle()  # the new interpreter's set-up is no gap of the pipeline's
        if tuner.done:
            logger.info("pipeline %s: threads %s", self.name, tuner.report.describe())

    def _reload(self, backoff: Backoff, beat: Heartbeat, stop: threading.Event) -> None:
        while not stop.is_set():
            if wait_beating(stop, backoff.next_delay(), beat):
                return
            beat.beat()
            try:
                self.parts = self._rebuild()
                self._stats.delegate = self.parts.delegate
                if self._tuner is not None:  # a new model starts with the initial count
                    self._tuner.interrupted()
                    self.parts.model.set_threads(self._tuner.current)
                self._stats.threads = self.parts.model.threads
                logger.info("pipeline %s: model reloaded", self.name)
                return
            except (ConfigError, ModelLoadError) as exc:
                logger.error("pipeline %s: cannot reload: %s", self.name, exc)
