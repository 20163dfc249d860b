"""Running one pipeline: a source thread feeding an inference worker, both supervised.

A broken source (camera unplugged, file gone) or model (interpreter error) is retried with
backoff inside its own pipeline; other pipelines never notice.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from edge_runtime.config.typed import ConfigError
from edge_runtime.pipeline.assembly import PipelineParts
from edge_runtime.pipeline.slot import FrameSlot
from edge_runtime.postprocessing.base import PostprocessError
from edge_runtime.preprocessing import PreprocessError
from edge_runtime.publishing.backoff import Backoff
from edge_runtime.publishing.payload import result_payload
from edge_runtime.ratelimit import RateLimitedLogger
from edge_runtime.sources.base import EndOfStream, Frame, Source, SourceError
from edge_runtime.supervision.heartbeat import Heartbeats

logger = logging.getLogger(__name__)

WAIT = 0.5  # seconds any loop blocks before it beats its heartbeat again


class ResultSink(Protocol):
    def publish_result(self, pipeline: str, body: dict[str, Any]) -> int: ...


@dataclass
class PipelineStats:
    """Counters read by the stats reporter; each is written by one thread only."""

    frames: int = 0
    results: int = 0
    input_errors: int = 0
    failures: int = 0
    state: str = "starting"
    last_error: str = ""
    started: float = field(default_factory=time.monotonic)


class PipelineRunner:
    def __init__(
        self,
        parts: PipelineParts,
        rebuild: Callable[[], PipelineParts],
        sink: ResultSink,
        device: str,
        heartbeats: Heartbeats,
    ) -> None:
        self.parts = parts
        self.name = parts.config.name
        self._rebuild = rebuild
        self._sink = sink
        self._device = device
        self._heartbeats = heartbeats
        self._stop = threading.Event()
        self._source: Source = parts.make_source()
        self.slot = FrameSlot(live=self._source.live)
        self.stats = PipelineStats()
        self._warn = RateLimitedLogger(logger)
        self._threads = [
            threading.Thread(target=self._source_loop, name=f"source-{self.name}", daemon=True),
            threading.Thread(target=self._inference_loop, name=f"inference-{self.name}", daemon=True),
        ]

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
        """The worker has ended (file source exhausted and every frame processed, or stopped)."""
        return not self._threads[1].is_alive()

    @property
    def dropped(self) -> int:
        return self.slot.dropped

    def input_errors(self) -> int:
        return self.stats.input_errors + self._source.input_errors()

    # -- source thread -----------------------------------------------------------------------------
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
                    self._stop.wait(delay)
                    continue
                if frame is None:
                    continue
                if interval:
                    now = time.monotonic()
                    if next_frame_at > now and self._stop.wait(next_frame_at - now):
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

    # -- inference worker --------------------------------------------------------------------------
    def _inference_loop(self) -> None:
        beat = self._heartbeats.register(f"inference-{self.name}")
        backoff = Backoff(1.0, 60.0)
        try:
            while not self._stop.is_set():
                beat.beat()
                frame = self.slot.get(WAIT)
                if frame is None:
                    if self.slot.finished:
                        break
                    continue
                if self.stats.state != "running":
                    self.stats.state = "running"
                try:
                    self._process(frame)
                    backoff.reset()
                except (PreprocessError, PostprocessError) as exc:
                    self.stats.input_errors += 1
                    self._warn.warning("input", "pipeline %s: skipping frame %s: %s",
                                       self.name, frame.name or frame.index, exc)
                except Exception as exc:  # noqa: BLE001 - a model failure must not end the daemon
                    self.stats.failures += 1
                    self.stats.state = "model-retrying"
                    self.stats.last_error = str(exc)
                    logger.exception("pipeline %s: inference failed; reloading the model", self.name)
                    self._reload(backoff, beat)
        finally:
            self.stats.state = "stopped" if self._stop.is_set() else "finished"
            self._heartbeats.unregister(f"inference-{self.name}")

    def _reload(self, backoff: Backoff, beat: Any) -> None:
        while not self._stop.is_set():
            if self._stop.wait(backoff.next_delay()):
                return
            beat.beat()
            try:
                self.parts = self._rebuild()
                logger.info("pipeline %s: model reloaded", self.name)
                return
            except ConfigError as exc:
                self.stats.last_error = str(exc)
                logger.error("pipeline %s: cannot reload: %s", self.name, exc)

    def _process(self, frame: Frame) -> None:
        parts = self.parts
        model = parts.model
        t0 = time.perf_counter()
        geometry = model.fill_input(lambda out: parts.preprocess(frame, out))
        t1 = time.perf_counter()
        model.invoke()
        t2 = time.perf_counter()
        outputs = [model.output(i) for i in range(len(model.outputs))]
        fields = parts.postprocess(outputs, geometry)
        t3 = time.perf_counter()
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
            model={"name": model.name, "sha256": model.sha256},
            timing_ms={"preprocess": (t1 - t0) * 1e3, "inference": (t2 - t1) * 1e3,
                       "postprocess": (t3 - t2) * 1e3},
            task_fields=fields,
        )
        self._sink.publish_result(self.name, body)
        self.stats.results += 1


def source_fps(parts: PipelineParts) -> float:
    return float(getattr(parts.config.source, "fps", 0.0) or 0.0)
