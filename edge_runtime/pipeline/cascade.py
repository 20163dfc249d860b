"""More than one model per pipeline: stages on detection crops, and confidence escalation.

    primary result ──► escalate? (top score < below: the bigger model answers instead)
                   └─► stages: for each detection the stage is `on`, best first, at most
                       max_per_frame: crop (crops.py) -> the stage's preprocessing -> its model
                       (the crops in one invoke when the model takes a batch) -> its task;
                       detection["stages"][name] = the task's fields

Both run where the pipeline post-processes (its publish thread, or its one worker for sensor
pipelines): the pipeline's interpreter is already busy with the next frame meanwhile (invoke
releases the GIL), so a stage holds up the primary model only when it takes longer than a frame.
Each secondary interpreter is touched by that one thread only.

A secondary model that fails at run time never costs the primary result (model_health.py): the
detections a failing stage would have run on carry `stages[name] = {"error": reason}` instead of
its fields, a failing escalation model leaves the pipeline model's answer with `escalated: false`
and `escalation_error`; each is counted, logged rate-limited, and the model is reloaded from its
file with backoff ([retry] model) until it answers again.

A stage's model is built exactly like a pipeline's (pipeline/assembly.py, with the key path
`pipelines[i].stages[j]`), so its task fields are what a pipeline of that task would publish; its
coordinates (a detection or landmark stage) are mapped back to the original frame.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from edge_runtime.config.cascade import StageConfig
from edge_runtime.config.typed import ConfigError
from edge_runtime.model.tflite_model import TfliteModel, dequantize
from edge_runtime.pipeline.crops import Region, crop_region, cut, to_frame_geometry
from edge_runtime.pipeline.model_health import ModelHealth, reason_of
from edge_runtime.postprocessing.base import PostprocessError
from edge_runtime.postprocessing.registry import TASKS
from edge_runtime.preprocessing import PreprocessError
from edge_runtime.ratelimit import RateLimitedLogger
from edge_runtime.sources.base import Frame

if TYPE_CHECKING:
    from edge_runtime.config.schema import AppConfig, PipelineConfig
    from edge_runtime.pipeline.assembly import PipelineParts

logger = logging.getLogger(__name__)


@dataclass
class StageCounters:
    invocations: int = 0  # model invokes (a batch of crops is one)
    crops: int = 0  # detections the stage ran on
    failures: int = 0  # crops left without a result ({"error": ...}: model down, bad crop output)
    model_failures: int = 0  # times the model failed (each puts it down until a reload)
    reloads: int = 0  # times the model was reloaded after a failure
    state: str = "running"  # running, or reloading (down after a failure)


@dataclass
class CascadeStats:
    """Written by the thread that post-processes; read by the stats reporter."""

    escalations: int = 0
    escalation_checks: int = 0  # results the escalation rule looked at
    escalation_failures: int = 0  # unsure results the bigger model did not answer (failed, or
    # down until its reload): the pipeline model's answer went out with `escalation_error`
    escalation_reloads: int = 0  # times the escalation model was reloaded after a failure
    escalation_state: str = "running"  # running, or reloading (down after a failure)
    stages: dict[str, StageCounters] = field(default_factory=dict)
    # The writer adds a stage at its first crops while the stats reader copies `stages`. A copy
    # is not one step: the garbage collector can run a finalizer (Python code, so a thread
    # switch) in the middle of it, and the copy then fails with "dictionary changed size".
    _grow: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False,
                                  compare=False)

    def stage(self, name: str) -> StageCounters:
        counters = self.stages.get(name)
        if counters is None:
            with self._grow:
                counters = self.stages.setdefault(name, StageCounters())
        return counters

    def to_dict(self) -> dict[str, Any]:
        with self._grow:
            stages = list(self.stages.items())
        return {name: {"invocations": c.invocations, "crops": c.crops, "failures": c.failures,
                       "model_failures": c.model_failures, "reloads": c.reloads,
                       "state": c.state}
                for name, c in stages}


def batch_capacity(model: TfliteModel, wanted: int) -> tuple[int, bool]:
    """(crops per invoke, whether the batch is resized per call) for a stage's model.

    A model whose input already has a batch of N > 1 takes N crops per invoke (a short batch is
    padded); a batch-1 model that accepts `resize_tensor_input` to `wanted` (every output then has
    one row per input) is resized to each call's crop count; anything else runs crop by crop.
    """
    first = model.inputs[0].shape[0] if model.inputs[0].shape else 1
    if first > 1:
        return first, False
    if wanted > 1 and model.resize_batch(wanted):
        model.resize_batch(1)
        return wanted, True
    return 1, False


class Stage:
    """One `[[pipelines.stages]]` entry, built: crops -> model -> task fields per detection."""

    def __init__(self, config: StageConfig, parts: PipelineParts, batching: bool = True,
                 health: ModelHealth | None = None) -> None:
        self.config = config
        self.name = config.name
        self.on = frozenset(config.on)
        self.batching = batching
        self.health = health  # None: no reload after a failure (a stage built by hand)
        # Its own limiter: a stage of the same name in another pipeline does not mute this one.
        self._warn = RateLimitedLogger(logger)
        self._adopt(parts)

    def _adopt(self, parts: PipelineParts) -> None:
        """Run on these parts (at start, and after a reload)."""
        self.parts = parts
        self.model = parts.model
        self.single_shape = self.model.inputs[0].shape
        self.capacity, self.resizable = batch_capacity(self.model, self.config.max_per_frame) \
            if self.batching else (1, False)
        if not self.batching and self.single_shape and self.single_shape[0] > 1:
            self.capacity = self.single_shape[0]  # a fixed batch cannot be avoided
        self._batch = self.model.inputs[0].shape[0] if self.model.inputs[0].shape else 1

    def describe(self) -> str:
        mode = (f"up to {self.capacity} crops per invoke" if self.capacity > 1
                else "one crop per invoke")
        on = f" on {', '.join(sorted(self.on))}" if self.on else ""
        return (f"stage {self.name}{on}: {self.model.path.name} "
                f"({self.model.runtime.describe()}, task {self.parts.task}), {mode}")

    def select(self, detections: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The detections this stage runs on: its labels, best first, at most max_per_frame."""
        chosen = [d for d in detections if not self.on or d.get("label") in self.on]
        chosen.sort(key=lambda d: -float(d.get("score", 0.0)))
        return chosen[: self.config.max_per_frame]

    def run(self, frame: Frame, detections: list[dict[str, Any]], counters: StageCounters) -> None:
        """Add `stages[name]` to each selected detection (in place)."""
        image = frame.data
        height, width = image.shape[:2]
        work: list[tuple[dict[str, Any], Region]] = []
        for detection in self.select(detections):
            region = crop_region(detection["box"], width, height, self.config.crop)
            if region is not None:
                work.append((detection, region))
        if work and not self._available(counters):
            self._no_result(work, self.health.reason if self.health else "", counters)
            return
        for start in range(0, len(work), self.capacity):
            chunk = work[start:start + self.capacity]
            try:
                self._run_chunk(frame, chunk, width, height, counters)
            except PreprocessError as exc:  # these crops, not the model
                self._no_result(chunk, reason_of(exc), counters)
                self._warn.warning(f"stage-{self.name}", "stage %s: no result for %d crop(s): %s",
                              self.name, len(chunk), exc)
            except Exception as exc:  # noqa: BLE001 - a stage never costs the primary result
                counters.model_failures += 1
                if self.health is None:
                    self._no_result(chunk, reason_of(exc), counters)
                    self._warn.warning(f"stage-{self.name}", "stage %s: no result for %d crop(s): %s",
                                  self.name, len(chunk), exc)
                    continue
                self.health.failed(exc)  # down: the rest of this frame goes without it too
                counters.state = self.health.state
                self._no_result(work[start:], self.health.reason, counters)
                return
            if self.health is not None:
                self.health.worked()

    def _available(self, counters: StageCounters) -> bool:
        """Up, or reloaded now that its next attempt is due."""
        if self.health is None:
            return True
        usable, parts = self.health.reload_if_due()
        if parts is not None:
            self._adopt(parts)
            counters.reloads += 1
        counters.state = self.health.state
        return usable

    def _no_result(self, work: list[tuple[dict[str, Any], Region]], reason: str,
                   counters: StageCounters) -> None:
        """These detections get `stages[name] = {"error": reason}`: the stage ran on them and
        has no answer (a detection the stage is not `on` has no entry)."""
        counters.failures += len(work)
        for detection, _ in work:
            detection.setdefault("stages", {})[self.name] = {"error": reason}

    def _run_chunk(self, frame: Frame, chunk: list[tuple[dict[str, Any], Region]], width: int,
                   height: int, counters: StageCounters) -> None:
        model, parts = self.model, self.parts
        if self.resizable and self._batch != len(chunk):
            if not model.resize_batch(len(chunk)):
                raise RuntimeError(f"the model no longer takes a batch of {len(chunk)}")
            self._batch = len(chunk)

        def fill(out: np.ndarray) -> list[Any]:
            if len(chunk) < out.shape[0]:
                out[len(chunk):] = 0  # a fixed batch's unused rows
            return [parts.preprocess(Frame(cut(frame.data, region), frame.index), out[k:k + 1])
                    for k, (_, region) in enumerate(chunk)]

        geometries = model.fill_input(fill)
        model.invoke()
        counters.invocations += 1
        counters.crops += len(chunk)
        raw = [model.raw_output(i) for i in range(len(model.outputs))]
        for k, (detection, region) in enumerate(chunk):
            outputs = [dequantize(r[k:k + 1], spec) for r, spec in zip(raw, model.outputs)]
            geometry = geometries[k]
            if geometry is not None:
                geometry = to_frame_geometry(geometry, region, width, height)
            try:
                fields = parts.postprocess(outputs, geometry)
            except PostprocessError as exc:
                self._no_result([(detection, region)], reason_of(exc), counters)
                self._warn.warning(f"stage-{self.name}", "stage %s: no result for a crop: %s",
                              self.name, exc)
                continue
            detection.setdefault("stages", {})[self.name] = fields


class Escalation:
    """`[pipelines.escalate]`: the bigger model answers when the pipeline's is unsure."""

    def __init__(self, below: float, parts: PipelineParts,
                 health: ModelHealth | None = None) -> None:
        self.below = below
        self.health = health  # None: no reload after a failure (built by hand)
        self.warn = RateLimitedLogger(logger)  # this pipeline's alone
        self.parts = parts
        self.model = parts.model

    def available(self, stats: CascadeStats) -> bool:
        """Up, or reloaded now that its next attempt is due."""
        if self.health is None:
            return True
        usable, parts = self.health.reload_if_due()
        if parts is not None:
            self.parts, self.model = parts, parts.model
            stats.escalation_reloads += 1
        stats.escalation_state = self.health.state
        return usable

    def unsure(self, fields: dict[str, Any]) -> bool:
        """The task's confidence in the result (classification: the top score) is below."""
        return self.parts.task_plugin.certainty(fields) < self.below

    def run(self, frame: Frame) -> dict[str, Any]:
        parts, model = self.parts, self.model
        geometry = model.fill_input(lambda out: parts.preprocess(frame, out))
        model.invoke()
        return parts.postprocess([model.output(i) for i in range(len(model.outputs))], geometry)


@dataclass
class Cascade:
    """A pipeline's secondary models; `apply` runs them on one primary result."""

    stages: tuple[Stage, ...] = ()
    escalation: Escalation | None = None

    def describe(self) -> list[str]:
        """One line per secondary model, for `check`."""
        lines = [stage.describe() for stage in self.stages]
        if self.escalation is not None:
            big = self.escalation.model
            lines.append(f"escalate below {self.escalation.below}: {big.path.name} "
                         f"({big.runtime.describe()}, task {self.escalation.parts.task})")
        return lines

    def escalate(self, frame: Frame, fields: dict[str, Any], model: dict[str, Any],
                 timing_ms: dict[str, float], stats: CascadeStats) -> tuple[dict[str, Any],
                                                                            dict[str, Any]]:
        """(task fields, model) of the deciding model; `escalated` added when escalation is on."""
        if self.escalation is None:
            return fields, model
        stats.escalation_checks += 1
        escalated = self.escalation.unsure(fields)
        if escalated:
            escalation = self.escalation
            health = escalation.health
            if not escalation.available(stats):  # down until its reload: the small model answers
                stats.escalation_failures += 1
                return {**fields, "escalated": False,
                        "escalation_error": health.reason if health else ""}, model
            t0 = time.perf_counter()
            try:
                fields = escalation.run(frame)
            except Exception as exc:  # noqa: BLE001 - the small model's answer still stands
                stats.escalation_failures += 1
                if health is None:
                    escalation.warn.warning("escalate", "escalation model %s failed, publishing the "
                                  "pipeline model's answer: %s", escalation.model.name, exc)
                    return {**fields, "escalated": False, "escalation_error": reason_of(exc)}, model
                health.failed(exc)
                stats.escalation_state = health.state
                return {**fields, "escalated": False, "escalation_error": health.reason}, model
            if health is not None:
                health.worked()
            timing_ms["escalation"] = (time.perf_counter() - t0) * 1e3
            big = escalation.model
            model = {"name": big.name, "sha256": big.sha256}
            stats.escalations += 1
        return {**fields, "escalated": escalated}, model

    def run_stages(self, frame: Frame, fields: dict[str, Any], timing_ms: dict[str, float],
                   stats: CascadeStats) -> None:
        """Each stage's fields into the detections it runs on; its time as `stages.<name>`."""
        detections = fields.get("detections")
        for stage in self.stages:
            t0 = time.perf_counter()
            if detections:
                stage.run(frame, detections, stats.stage(stage.name))
            timing_ms[f"stages.{stage.name}"] = (time.perf_counter() - t0) * 1e3


def build_cascade(pipeline: PipelineConfig, app: AppConfig, task: str, labels: tuple[str, ...],
                  assemble: Callable[..., PipelineParts]) -> Cascade | None:
    """The pipeline's stages and escalation, each model built like a pipeline's; ConfigError
    naming `pipelines[i].stages[j]...` or `pipelines[i].escalate...` on any mismatch."""
    if not pipeline.stages and pipeline.escalate is None:
        return None
    key = f"pipelines[{pipeline.index}]"
    stages = []
    if pipeline.stages and task != "detection":
        raise ConfigError(app.file, f"{key}.stages",
                          f"stages run on detections; this pipeline's task is {task!r}")
    for stage in pipeline.stages:
        at = f"{key}.stages[{stage.index}]"
        unknown = [label for label in stage.on if labels and label not in labels]
        if unknown:
            raise ConfigError(app.file, f"{at}.on",
                              f"unknown label {unknown[0]!r} (the detector's labels: "
                              f"{', '.join(labels[:20])})")
        as_pipeline = _as_pipeline(pipeline, stage.model, stage.preprocess, stage.postprocess,
                                   f"{pipeline.name}.{stage.name}")
        parts = assemble(as_pipeline, app, key=at)
        health = ModelHealth(f"pipeline {pipeline.name}: stage {stage.name}",
                             lambda p=as_pipeline, k=at: assemble(p, app, key=k), app.retry.model)
        stages.append(Stage(stage, parts, batching=stage.batch, health=health))
        logger.info("pipeline %s: %s", pipeline.name, stages[-1].describe())
    escalation = None
    if pipeline.escalate is not None:
        at = f"{key}.escalate"
        if TASKS[task].confidence is None:
            scored = [name for name, plugin in TASKS.items() if plugin.confidence is not None]
            raise ConfigError(app.file, at, f"escalation compares top scores; task {task!r} has "
                                            f"none (use {' or '.join(scored)})")
        config = pipeline.escalate
        as_pipeline = _as_pipeline(pipeline, config.model, config.preprocess, config.postprocess,
                                   f"{pipeline.name}.escalate")
        parts = assemble(as_pipeline, app, key=at)
        if parts.task != task:
            raise ConfigError(app.file, f"{at}.postprocess.task",
                              f"the escalation model's task is {parts.task!r}, the pipeline's "
                              f"{task!r}: they must answer the same question")
        health = ModelHealth(f"pipeline {pipeline.name}: escalation model",
                             lambda: assemble(as_pipeline, app, key=at), app.retry.model)
        escalation = Escalation(config.below, parts, health)
    return Cascade(tuple(stages), escalation)


def _as_pipeline(pipeline: PipelineConfig, model: Any, preprocess: Any,
                 postprocess: dict[str, Any], name: str) -> PipelineConfig:
    """A secondary model as a pipeline of its own (same source kind; no gate, policy or stages)."""
    from edge_runtime.config.schema import GateConfig, PreprocessConfig, PublishConfig

    return replace(pipeline, name=name, model=model,
                   preprocess=preprocess or PreprocessConfig(), postprocess=dict(postprocess),
                   gate=GateConfig(), publish=PublishConfig(), stages=(), escalate=None)
