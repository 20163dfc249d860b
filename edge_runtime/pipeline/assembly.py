"""From a validated PipelineConfig to working parts: model, pre/post-processing, source factory.

Everything that can be wrong about a pipeline without running it is found here, so `check` and
`run` fail the same way, with the key path of the culprit, before anything starts.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edge_runtime.config.schema import AppConfig, PipelineConfig
from edge_runtime.config.typed import ConfigError, Context, build, coerce
from edge_runtime.model.delegates import CPU, LoadedModel
from edge_runtime.model.delegates import load_model as load_with_delegate
from edge_runtime.model.metadata import ModelMetadata
from edge_runtime.model.runtime import RuntimeUnavailable, select_runtime
from edge_runtime.model.tflite_model import ModelLoadError, TfliteModel
from edge_runtime.pipeline.auto_threads import initial_threads
from edge_runtime.pipeline.cascade import Cascade, build_cascade
from edge_runtime.postprocessing.base import Postprocessor, PostprocessError, TaskContext
from edge_runtime.postprocessing.labels import LabelsError, read_labels, warn_blank_labels
from edge_runtime.postprocessing.registry import DEFAULT_TASK, TASKS
from edge_runtime.postprocessing.task import Task
from edge_runtime.preprocessing import (
    AudioPreprocessor,
    AudioSpec,
    Geometry,
    ImagePreprocessor,
    PreprocessError,
    PreprocessSpec,
    SensorPreprocessor,
)
from edge_runtime.preprocessing.audio import LOG_MEL_KEYS
from edge_runtime.sources.base import (
    Frame,
    Kind,
    Source,
    SourceContext,
    SourceError,
    SourceTraits,
)
from edge_runtime.sources.registry import SOURCES
from edge_runtime.supervision.fault_injection import rig_model

Preprocess = Callable[[Frame, np.ndarray], "Geometry | None"]

logger = logging.getLogger(__name__)


@dataclass
class PipelineParts:
    config: PipelineConfig
    model: TfliteModel
    task: str
    preprocess: Preprocess
    postprocess: Postprocessor
    make_source: Callable[[], Source]
    source: SourceTraits  # what the source is (kind, live, pacing), as its options declare
    task_plugin: Task  # what the task is (payload field, `change` summary, entities)
    delegate: str = "cpu"  # what the model runs on (delegates.load_model)
    cascade: Cascade | None = None  # stages on detection crops, escalation (cascade.py)


def load_model(pipeline: PipelineConfig, app: AppConfig, key: str | None = None) -> LoadedModel:
    key = f"{key or f'pipelines[{pipeline.index}]'}.model"
    try:
        runtime = select_runtime(pipeline.model.runtime)
        loaded = load_with_delegate(pipeline.model.path, runtime,
                                    threads=initial_threads(pipeline.model.threads),
                                    delegate=pipeline.model.delegate)
    except RuntimeUnavailable as exc:
        raise ConfigError(app.file, f"{key}.runtime", str(exc)) from exc
    except ModelLoadError as exc:
        raise ConfigError(app.file, f"{key}.path", exc.reason + f" ('{exc.path}')") from exc
    # Every load (start, reload, stage and escalation models) passes here; no-op unless a test
    # names this model (`pipeline.name`: a stage's is `<pipeline>.<stage>`) in its environment.
    rig_model(loaded.model, pipeline.name)
    return loaded


IMAGE_KEYS = ("color", "resize", "layout", "interpolation")
AUDIO_KEYS = ("features", *LOG_MEL_KEYS)


def _check_preprocess_keys(pipeline: PipelineConfig, traits: SourceTraits,
                           meta: ModelMetadata | None, app: AppConfig, key: str) -> None:
    """Image keys on a windowed pipeline, audio keys on a non-audio one, an audio model on a
    source that gives no audio: each a ConfigError naming the key, not a silent no-op."""
    given = pipeline.preprocess.overrides()
    audio = traits.kind is Kind.AUDIO
    wrong = [k for k in (IMAGE_KEYS if traits.kind.windowed else ()) if k in given]
    wrong += [k for k in AUDIO_KEYS if k in given and not audio]
    if wrong:
        where = "audio" if audio else "image" if not traits.kind.windowed else "sensor"
        raise ConfigError(app.file, f"{key}.preprocess.{wrong[0]}",
                          f"not a setting of {where} pipelines (source type "
                          f"{pipeline.source.type!r} gives {traits.kind.value} frames)")
    if meta is not None and meta.audio and not audio:
        rate = meta.audio.get("sample_rate")
        raise ConfigError(app.file, f"{key}.source.type",
                          f"model '{pipeline.model.path}' takes audio ({rate} Hz, its metadata's "
                          f"audio section); give it an audio source: type = \"command\" with "
                          f"format = \"s16le\" (e.g. arecord -f S16_LE -r {rate} -c 1 -t raw)")


def _audio_spec(pipeline: PipelineConfig, traits: SourceTraits, meta: ModelMetadata | None,
                app: AppConfig, key: str) -> AudioSpec:
    """The model's audio section, with the source's sample_rate/window and the config's
    [pipelines.preprocess] audio keys; a source that disagrees with the model is an error."""
    doc = dict(meta.audio) if meta is not None else {}
    for name in ("sample_rate", "window"):
        given = getattr(traits, name)
        if not given:
            continue
        wanted = doc.get(name)
        if wanted and given != wanted:
            unit = "Hz" if name == "sample_rate" else "samples"
            raise ConfigError(app.file, f"{key}.source.{name}",
                              f"{given} {unit}, but model '{pipeline.model.path}' was made for "
                              f"{wanted} {unit} (its metadata); leave it out or match it")
        doc[name] = given
    if "sample_rate" not in doc:
        raise ConfigError(app.file, f"{key}.source.sample_rate",
                          f"required: model '{pipeline.model.path}' has no audio metadata")
    doc.setdefault("window", doc["sample_rate"])
    overrides = {k: v for k, v in pipeline.preprocess.overrides().items() if k in AUDIO_KEYS}
    try:
        return AudioSpec.from_dict(doc, overrides)
    except PreprocessError as exc:
        raise ConfigError(app.file, f"{key}.preprocess", str(exc)) from exc


def assemble(pipeline: PipelineConfig, app: AppConfig, model: TfliteModel | None = None,
             key: str | None = None) -> PipelineParts:
    """Build every part of a pipeline; ConfigError on any mismatch. `key`: where the model spec
    is in the file (a stage's `pipelines[0].stages[1]`; default the pipeline's)."""
    key = key or f"pipelines[{pipeline.index}]"
    ctx = Context(app.file, app.base_dir)
    delegate = CPU
    if model is None:
        loaded = load_model(pipeline, app, key)
        model, delegate = loaded.model, loaded.delegate
    meta = model.metadata
    if len(model.inputs) != 1:
        raise ConfigError(app.file, f"{key}.model.path",
                          f"models with {len(model.inputs)} inputs are not supported (need 1)")
    tensor = model.inputs[0]
    plugin = SOURCES[pipeline.source.type]
    traits = pipeline.source.traits()

    # Preprocessing: metadata first, config overrides on top.
    try:
        spec = PreprocessSpec().updated(meta.preprocess if meta else {})
        spec = spec.updated(pipeline.preprocess.overrides())
    except PreprocessError as exc:
        raise ConfigError(app.file, f"{key}.preprocess", str(exc)) from exc
    columns: tuple[str, ...] = tuple((meta.sensor.get("columns") if meta else None) or ())
    window = int((meta.sensor.get("window") if meta else 0) or 0)
    preprocess: Preprocess
    image_size: tuple[int, int] | None = None
    sample_rate = 0
    _check_preprocess_keys(pipeline, traits, meta, app, key)
    try:
        if traits.kind is Kind.AUDIO:
            audio = _audio_spec(pipeline, traits, meta, app, key)
            sample_rate, window, columns = audio.sample_rate, audio.window, traits.columns
            listener = AudioPreprocessor(spec, audio, tensor)
            preprocess = lambda frame, out: listener(frame.data, out)  # noqa: E731
        elif traits.kind.windowed:
            columns = traits.columns or columns
            window = traits.window or window
            if not columns:
                raise ConfigError(app.file, f"{key}.source.columns",
                                  "required: the model's metadata names no sensor columns")
            if not window:
                window = math.prod(tensor.shape) // len(columns)
            sensor = SensorPreprocessor(spec, tensor, window, len(columns))
            preprocess = lambda frame, out: sensor(frame.data, out)  # noqa: E731
        else:
            image = ImagePreprocessor(spec, tensor)
            image_size = image.input_size
            preprocess = lambda frame, out: image(frame.data, out)  # noqa: E731
    except PreprocessError as exc:
        raise ConfigError(app.file, f"{key}.preprocess",
                          f"{exc} (model '{pipeline.model.path}')") from exc

    # Postprocessing: task from config, else metadata, else raw; options likewise layered.
    options = dict(pipeline.postprocess)
    task = options.pop("task", None) or (meta.task if meta and meta.task in TASKS else None) \
        or DEFAULT_TASK
    if task not in TASKS:
        raise ConfigError(app.file, f"{key}.postprocess.task",
                          f"unknown task {task!r} (expected one of: {', '.join(TASKS)})")
    labels = tuple(meta.labels) if meta else ()
    labels_path = options.pop("labels", None)
    if labels_path is not None:
        path = coerce(Path, labels_path, f"{key}.postprocess.labels", ctx)
        try:
            labels = read_labels(path)
        except LabelsError as exc:
            raise ConfigError(app.file, f"{key}.postprocess.labels", str(exc)) from None
        warn_blank_labels(labels, f"{app.file}: {key}.postprocess.labels ('{path}')")
    elif labels:
        warn_blank_labels(labels, f"the metadata of '{pipeline.model.path}'")
    task_plugin = TASKS[task]
    option_names = {f for f in task_plugin.options.__dataclass_fields__}
    merged = {k: v for k, v in (meta.postprocess if meta else {}).items() if k in option_names}
    merged.update(options)
    task_options = build(task_plugin.options, merged, f"{key}.postprocess", ctx)
    try:
        postprocess = task_plugin.create(
            task_options, TaskContext(tuple(model.outputs), labels, tensor.shape)
        )
    except PostprocessError as exc:
        raise ConfigError(app.file, f"{key}.postprocess", str(exc)) from exc

    source_ctx = SourceContext(
        base_dir=app.base_dir, pipeline=pipeline.name, mqtt=app.mqtt,
        client_id=app.mqtt.client_id_for(app.device.id), columns=columns, window=window,
        image_size=image_size, sample_rate=sample_rate,
        reconnect=(app.retry.broker.min_delay, app.retry.broker.max_delay),
    )

    def make_source() -> Source:
        return plugin.create(pipeline.source, source_ctx)

    if pipeline.gate.motion and traits.kind.windowed:
        raise ConfigError(app.file, f"{key}.gate.motion",
                          f"motion gating needs an image source, not {pipeline.source.type!r}")
    if pipeline.publish.mode == "change" and not task_plugin.changes:
        changing = [name for name, plugin in TASKS.items() if plugin.changes]
        raise ConfigError(app.file, f"{key}.publish.mode",
                          f"'change' compares labels; task {task!r} has none (use "
                          f"{' or '.join(changing)}, or mode = 'every')")

    if traits.kind.windowed:
        try:  # catches missing columns/window now rather than at run time
            make_source().close()
        except SourceError as exc:
            raise ConfigError(app.file, f"{key}.source", str(exc)) from exc
    cascade = build_cascade(pipeline, app, task, labels, assemble)
    return PipelineParts(pipeline, model, task, preprocess, postprocess, make_source, traits,
                         task_plugin, delegate, cascade)
