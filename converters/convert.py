"""The conversion pipeline: load, read data, convert per mode, verify, embed metadata, write.

`run(options)` returns the report and the exit status; converters.cli only parses arguments
and prints.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from converters.conversion import ConversionJob, convert_all
from converters.data import Dataset, InputSettings, load_dataset, read_labels_file
from converters.errors import ConversionFailed, ConvertError
from converters.loaders import ConversionInput, SourceModel, find_loader, source_sha256
from converters.metadata_writer import embed_metadata
from converters.modes import MODE_NAMES, MODES, resolve_io_type
from converters.prune import gzip_size
from converters.progress import Progress
from converters.report import ModeReport, Report
from converters.runtime_check import check, targets
from converters.verify import TfliteRun, reference_accuracy, run_tflite, score
from edge_runtime.config.typed import ConfigError, Context, build
from edge_runtime.model.metadata import ModelMetadata, read_model_metadata
from edge_runtime.model.runtime import RuntimeUnavailable, select_runtime
from edge_runtime.model.tflite_model import ModelLoadError, TfliteModel
from edge_runtime.postprocessing.labels import LabelsError, read_labels, warn_blank_labels
from edge_runtime.postprocessing.registry import TASKS as DAEMON_TASKS
from edge_runtime.sources.images import DEFAULT_MAX_PIXELS
from edge_runtime.preprocessing import (
    AudioPreprocessor,
    AudioSpec,
    ImagePreprocessor,
    PreprocessError,
    PreprocessSpec,
)

logger = logging.getLogger(__name__)

TASKS = tuple(DAEMON_TASKS)  # the daemon's task plugins: a model must name one it can run
RANDOM_SAMPLES = 32
VERIFY_RUNTIME = "ai-edge-litert"  # the daemon's default runtime


@dataclass(frozen=True)
class Options:
    model: Path
    output: Path | None = None
    # --compare: also write each verified mode's model here as <model stem>_<mode>.tflite.
    output_dir: Path | None = None
    modes: tuple[str, ...] = ("int8",)
    io_type: str | None = None
    calibration_data: Path | None = None
    validation_data: Path | None = None
    validation_labels: Path | None = None
    labels_file: Path | None = None
    task: str = "classification"
    # Only the PreprocessSpec fields the user gave (color, resize, mean, std, layout, ...).
    preprocess: dict[str, Any] = field(default_factory=dict)
    columns: tuple[str, ...] = ()
    window: int | None = None
    stride: int = 1
    label_column: str | None = None
    reduced_decode: bool = True  # decode images as the images source's reduced_decode
    max_pixels: int = DEFAULT_MAX_PIXELS  # and refuse them past its max_pixels
    # Audio models: sample_rate, features and log-mel keys the user gave (--sample-rate, ...).
    audio: dict[str, Any] = field(default_factory=dict)
    calibration_samples: int = 200
    validation_samples: int | None = None
    max_accuracy_drop: float | None = None
    # Task options stored in the metadata (validated against the daemon's task plugin).
    postprocess: dict[str, Any] = field(default_factory=dict)
    # A pruned model: float modes store its zeros sparse (converters.modes.SPARSE_WEIGHT_MODES).
    sparse_weights: bool = False
    tflite_runtime_python: str | None = None
    timeout_s: float = 1800.0
    progress: bool = True
    # Set when `model` is an intermediate file made from the user's model (a pruned copy, a
    # distilled student): (the user's model, how it was made). The metadata and the report name
    # the user's file, not the intermediate one.
    made_from: tuple[Path, str] | None = None

    @property
    def compare(self) -> bool:
        return len(self.modes) > 1


@dataclass
class Result:
    report: Report
    exit_code: int
    written: Path | None = None
    message: str = ""  # why nothing was written, when exit_code is not 0
    models: dict[str, bytes] = field(default_factory=dict)  # mode -> verified .tflite bytes


def converter_version() -> str:
    try:
        return importlib_metadata.version("edge-runtime")
    except importlib_metadata.PackageNotFoundError:
        import edge_runtime

        return edge_runtime.__version__


def read_label_names(path: Path) -> tuple[str, ...]:
    """--labels: the daemon's reader (line N names class N; a blank line is a class named ""),
    with the warning the daemon gives at start about blank names."""
    try:
        names = read_labels(path)
    except LabelsError as exc:
        raise ConvertError(f"--labels: {exc}") from None
    warn_blank_labels(names, f"--labels '{path}'")
    return names


def _check_options(options: Options) -> dict[str, str]:
    if not options.compare and options.output is None:
        raise ConvertError("give the output file with -o/--output (or use --compare)")
    if options.task not in TASKS:
        raise ConvertError(f"--task must be one of {', '.join(TASKS)}")
    io_types = {}
    for mode in options.modes:
        if mode not in MODES:
            raise ConvertError(
                f"unknown --quantize {mode!r}; choose one of {', '.join(MODE_NAMES)}")
        io_type = options.io_type
        if options.compare and io_type not in MODES[mode].io_types:
            io_type = None  # --compare: --io-type applies to the modes that offer it
        try:
            io_types[mode] = resolve_io_type(mode, io_type)
        except ValueError as exc:
            raise ConvertError(str(exc)) from None
    try:
        # The same check the daemon makes when it reads [pipelines.postprocess].
        build(DAEMON_TASKS[options.task].options, dict(options.postprocess), "postprocess",
              Context("edge-convert --postprocess", Path.cwd()))
    except ConfigError as exc:
        raise ConvertError(str(exc)) from None
    if options.max_pixels < 1:
        raise ConvertError("--max-pixels must be at least 1")
    if options.max_accuracy_drop is not None and options.max_accuracy_drop < 0:
        raise ConvertError("--max-accuracy-drop must be 0 or more (a fraction, 0.01 = 1 point)")
    return io_types


def _source_io_types(options: Options, source: SourceModel,
                     io_types: dict[str, str]) -> dict[str, str]:
    """ai-edge-quantizer (PyTorch input) keeps float32 input/output tensors in every mode."""
    if not source.float_io_only:
        return io_types
    if options.io_type not in (None, "float32") and not options.compare:
        raise ConvertError(f"--io-type {options.io_type}: {source.framework} models keep float32 "
                           f"input and output tensors (ai-edge-quantizer); leave --io-type out")
    return {mode: "float32" for mode in io_types}


def _input_settings(options: Options, source: SourceModel) -> InputSettings:
    given = dict(options.preprocess)
    if source.source_layout and given.get("layout", "nhwc") != "nhwc":
        raise ConvertError(f"--layout {given['layout']}: the converted model takes NHWC (the "
                           f"{source.source_layout.upper()} source model is converted to it); "
                           f"leave --layout out")
    shape = source.input.shape
    audio = _audio_spec(options, source, given)
    if "color" not in given and len(shape) == 4 and audio is None:
        channels = shape[3] if given.get("layout", "nhwc") == "nhwc" else shape[1]
        given["color"] = "gray" if channels == 1 else "rgb"
    try:
        spec = PreprocessSpec().updated(given)
    except PreprocessError as exc:
        raise ConvertError(str(exc)) from None
    if audio is not None:
        try:
            AudioPreprocessor(spec, audio, source.input)  # the input tensor holds the features
        except PreprocessError as exc:
            raise ConvertError(str(exc)) from None
    return InputSettings(source.input, spec, options.columns, options.window, options.stride,
                         options.label_column, options.reduced_decode, audio,
                         max_pixels=options.max_pixels)


def _audio_spec(options: Options, source: SourceModel, given: dict[str, Any]) -> AudioSpec | None:
    """--sample-rate and friends into the audio section (None: not an audio model)."""
    if not options.audio:
        return None
    if "sample_rate" not in options.audio:
        raise ConvertError(f"{', '.join('--' + k.replace('_', '-') for k in options.audio)}: "
                           f"audio options need --sample-rate")
    if options.columns:
        raise ConvertError("--columns is for sensor models, --sample-rate for audio models")
    if given.get("layout", "nhwc") != "nhwc" or "color" in given or "resize" in given:
        raise ConvertError("--color, --resize and --layout are image options; an audio model "
                           "takes --mean/--std and the audio options")
    doc = {"window": options.window or options.audio["sample_rate"], **options.audio}
    try:
        return AudioSpec.from_dict(doc)
    except PreprocessError as exc:
        raise ConvertError(str(exc)) from None


def _random_inputs(settings: InputSettings, sensor: bool) -> np.ndarray:
    """Inputs for agreement checks when no data was given: random images through the daemon's
    preprocessing, or standard-normal arrays."""
    rng = np.random.default_rng(0)
    if settings.audio is not None:
        from converters.audio_data import noise_windows

        return noise_windows(settings.tensor, settings.preprocess, settings.audio,
                             RANDOM_SAMPLES, rng)
    x = np.zeros((RANDOM_SAMPLES, *settings.tensor.shape[1:]), settings.tensor.dtype)
    if not sensor and len(settings.tensor.shape) == 4:
        try:
            preprocessor = ImagePreprocessor(settings.preprocess, settings.tensor)
        except PreprocessError as exc:
            raise ConvertError(str(exc)) from None
        for i in range(RANDOM_SAMPLES):
            frame = rng.integers(0, 256, (preprocessor.height, preprocessor.width, 3), np.uint8)
            preprocessor(frame, x[i])
        return x
    x[...] = rng.standard_normal(x.shape)
    return x


def _metadata(options: Options, settings: InputSettings, source: SourceModel, sha256: str,
              labels: tuple[str, ...], mode: str, io_type: str, tf_version: str,
              verification: dict[str, Any] | None = None) -> ModelMetadata:
    audio: dict[str, Any] = {}
    if settings.columns or settings.audio is not None:
        preprocess = {k: list(v) for k, v in settings.preprocess.to_dict().items()
                      if k in ("mean", "std") and k in options.preprocess}
        sensor = ({"columns": list(settings.columns), "window": settings.sensor_window()}
                  if settings.columns else {})
        audio = settings.audio.to_dict() if settings.audio is not None else {}
    else:
        preprocess = settings.preprocess.to_dict() if len(source.input.shape) == 4 else {}
        sensor = {}
    postprocess = dict(options.postprocess)
    return ModelMetadata(
        task=options.task,
        labels=labels,
        preprocess=preprocess,
        postprocess=postprocess,
        sensor=sensor,
        audio=audio,
        source=_source_doc(source, sha256, options.made_from),
        converter={"name": "edge-convert", "version": converter_version(),
                   "tensorflow": tf_version, "quantize": mode, "io_type": io_type},
        verification={"report": verification} if verification else {},
    )


def _source_doc(source: SourceModel, sha256: str, made_from: tuple[Path, str] | None
                ) -> dict[str, Any]:
    doc = {"file": source.path.name, "sha256": sha256, "framework": source.framework}
    if made_from is not None:  # an intermediate file: name the user's model instead
        original, how = made_from
        doc.update(file=original.name, sha256=source_sha256(original), made_by=how)
    if source.source_layout:
        doc["layout"] = source.source_layout  # the source model's; the device feeds NHWC
    return doc


@dataclass
class _Inputs:
    calibration: Dataset | None
    validation: Dataset
    note: str  # how the validation data was chosen, when not given


def _load_inputs(options: Options, settings: InputSettings, known_labels: tuple[str, ...],
                 progress: Progress) -> _Inputs:
    needs_calibration = any(MODES[m].needs_calibration for m in options.modes)
    calibration: Dataset | None = None
    if options.calibration_data is not None:
        calibration = load_dataset(options.calibration_data, settings, known_labels,
                                   options.calibration_samples, progress, "calibration")
    elif needs_calibration and not options.compare:
        raise ConvertError(f"--quantize {options.modes[0]} needs --calibration-data "
                           f"(a few hundred typical inputs)")
    note = ""
    if options.validation_data is not None:
        validation = load_dataset(options.validation_data, settings, known_labels,
                                  options.validation_samples, progress, "validation")
    elif calibration is not None:
        validation = calibration
        note = "no --validation-data: verified on the calibration data"
    else:
        validation = Dataset(_random_inputs(settings, bool(settings.columns)), None,
                             "random inputs")
        note = (f"no --validation-data: agreement measured on {RANDOM_SAMPLES} random inputs, "
                f"which says little about accuracy")
    if options.validation_labels is not None:
        labels, names = read_labels_file(options.validation_labels, known_labels)
        if len(labels) != len(validation):
            raise ConvertError(f"validation labels {options.validation_labels}: "
                               f"{len(labels)} labels for {len(validation)} samples")
        validation.labels, validation.class_names = labels, names or validation.class_names
        validation.origin += f", labels from {options.validation_labels}"
    return _Inputs(calibration, validation, note)


def run(options: Options) -> Result:
    io_types = _check_options(options)
    progress = Progress(options.progress)
    loader = find_loader(options.model)
    known_labels = read_label_names(options.labels_file) if options.labels_file else ()
    try:
        runtime = select_runtime(VERIFY_RUNTIME)
    except RuntimeUnavailable as exc:
        raise ConvertError(f"cannot verify: {exc}") from None
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    started = time.monotonic()
    source = loader.load(options.model)
    io_types = _source_io_types(options, source, io_types)
    conversion = source.conversion or ConversionInput(loader.name, options.model)
    sha256 = source_sha256(options.model)
    settings = _input_settings(options, source)
    logger.info("loaded %s (%s), input %s %s", options.model, loader.name,
                list(source.input.shape), source.input.dtype)
    inputs = _load_inputs(options, settings, known_labels, progress)
    validation, calibration = inputs.validation, inputs.calibration
    labels = tuple(known_labels) or validation.class_names
    classification = options.task == "classification"

    reference = source.predict(validation.x)
    ref_accuracy = reference_accuracy(reference, validation.labels) if classification else None
    if options.max_accuracy_drop is not None and (
            not classification or reference[0].reshape(len(validation), -1).shape[1] < 2):
        raise ConvertError("--max-accuracy-drop needs a classification model with class scores")

    report = Report(
        source={**_source_doc(source, sha256, options.made_from), "loader": loader.name,
                "path": str(options.made_from[0] if options.made_from else source.path)},
        input={"shape": list(source.input.shape), "dtype": source.input.dtype.name},
        task=options.task,
        validation={"origin": validation.origin, "samples": len(validation),
                    "labeled": validation.labels is not None,
                    "reference_accuracy": None if ref_accuracy is None else round(ref_accuracy, 6),
                    "note": inputs.note},
        calibration=({"origin": calibration.origin, "samples": len(calibration)}
                     if calibration is not None else None),
        converter={"name": "edge-convert", "version": converter_version(),
                   "tensorflow": tf.__version__},
    )
    jobs = []
    for mode in options.modes:
        if MODES[mode].needs_calibration and calibration is None:
            report.modes.append(ModeReport(mode, io_types[mode], "skipped",
                                           "needs --calibration-data"))
        else:
            jobs.append(ConversionJob(mode, io_types[mode]))

    def metadata(mode: str, io_type: str, verification: dict[str, Any] | None) -> ModelMetadata:
        return _metadata(options, settings, source, sha256, labels, mode, io_type,
                         tf.__version__, verification)

    with tempfile.TemporaryDirectory(prefix="edge-convert-") as tmp:
        workdir = Path(tmp)
        outcomes = convert_all(conversion.loader, conversion.model, jobs,
                               calibration.x if calibration is not None else None, workdir,
                               progress, options.timeout_s, conversion.command,
                               {**conversion.job, "sparse_weights": options.sparse_weights})
        verified: dict[str, bytes] = {}
        for outcome in outcomes:
            mode, io_type = outcome.job.mode, outcome.job.io_type
            entry = ModeReport(mode, io_type)
            report.modes.append(entry)
            if outcome.model_bytes is None:
                entry.status, entry.message = "failed", outcome.error or "conversion failed"
                continue
            # Verify the file as it will ship (metadata included), then embed the report.
            candidate = workdir / f"{mode}-with-metadata.tflite"
            candidate.write_bytes(embed_metadata(outcome.model_bytes,
                                                 metadata(mode, io_type, None)))
            _verify(entry, candidate, runtime, validation, reference, ref_accuracy,
                    classification, options, workdir, progress)
            if entry.status == "ok":
                final = metadata(mode, io_type, _verification_doc(entry, report))
                verified[mode] = embed_metadata(outcome.model_bytes, final)
    report.modes.sort(key=lambda m: MODE_NAMES.index(m.mode))
    logger.info("converted and verified in %.1f s", time.monotonic() - started)
    result = _finish(options, report, verified, runtime)
    result.models = verified
    return result


def _finish(options: Options, report: Report, verified: dict[str, bytes],
            runtime: Any) -> Result:
    """Write what passed; the exit status and message."""
    if options.compare:
        if options.output_dir is not None:
            for mode, model_bytes in verified.items():
                _write(options.output_dir / f"{options.model.stem}_{mode}.tflite",
                       model_bytes, runtime)
        ok = any(m.status == "ok" for m in report.modes)
        return Result(report, 0 if ok else 1, None, "" if ok else "no mode passed")
    entry = report.modes[0]
    if entry.status != "ok":
        return Result(report, 1, None, f"--quantize {entry.mode}: {entry.message}; "
                                       f"{options.output} was not written")
    assert options.output is not None
    written = _write(options.output, verified[entry.mode], runtime)
    report.output = str(written)
    return Result(report, 0, written)


def _verify(entry: ModeReport, candidate: Path, runtime: Any, validation: Dataset,
            reference: list[np.ndarray], ref_accuracy: float | None, classification: bool,
            options: Options, workdir: Path, progress: Progress) -> None:
    """Fill `entry` from running `candidate` like the daemon would; mark it rejected on failure."""
    try:
        model, run_ = run_tflite(candidate, runtime, validation.x, progress, entry.mode)
    except (ModelLoadError, ValueError) as exc:
        entry.status, entry.message = "failed", f"the daemon's loader rejects it: {exc}"
        return
    try:
        scores = score(run_.outputs, reference, validation.labels, classification)
    except ValueError as exc:
        entry.status, entry.message = "failed", f"outputs do not match the source model: {exc}"
        return
    entry.size_bytes = candidate.stat().st_size
    entry.gzip_bytes = gzip_size(candidate.read_bytes())
    entry.accuracy, entry.agreement = scores.accuracy, scores.agreement
    entry.max_abs_diff, entry.mean_abs_diff = scores.max_abs_diff, scores.mean_abs_diff
    entry.latency_ms = run_.latency_ms
    if scores.accuracy is not None and ref_accuracy is not None:
        entry.accuracy_drop = ref_accuracy - scores.accuracy
    elif scores.agreement is not None:
        entry.accuracy_drop = 1.0 - scores.agreement
    _runtime_checks(entry, candidate, model, run_, options, workdir)
    limit = options.max_accuracy_drop
    if limit is not None and entry.accuracy_drop is not None and entry.accuracy_drop > limit + 1e-9:
        what = "accuracy" if scores.accuracy is not None else "agreement with the source model"
        entry.status = "rejected"
        entry.message = (f"{what} dropped by {entry.accuracy_drop:.2%}, more than "
                         f"--max-accuracy-drop {limit:.2%}")
    failed = [c for c in entry.runtime_checks if c.status == "failed"]
    if failed and entry.status == "ok":
        entry.status = "rejected"
        entry.message = "; ".join(c.line() for c in failed)


def _runtime_checks(entry: ModeReport, candidate: Path, model: TfliteModel, run_: TfliteRun,
                    options: Options, workdir: Path) -> None:
    scales = [(o.scale, o.zero_point) if o.quantized else (0.0, 0) for o in model.outputs]
    for target in targets(options.tflite_runtime_python):
        entry.runtime_checks.append(
            check(target, candidate, run_.raw_inputs, run_.raw_outputs, scales, workdir)
        )


def _verification_doc(entry: ModeReport, report: Report) -> dict[str, Any]:
    doc = entry.to_dict()
    doc.pop("status", None)
    doc["validation"] = {k: v for k, v in report.validation.items() if v not in (None, "")}
    doc["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return doc


def _write(output: Path, model_bytes: bytes, runtime: Any) -> Path:
    """Write atomically, then prove the daemon's loader reads the file and its metadata back."""
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    partial.write_bytes(model_bytes)
    try:
        loaded = TfliteModel(partial, runtime)
        if loaded.metadata != read_model_metadata(model_bytes) or loaded.metadata is None:
            raise ConversionFailed(f"{output}: the metadata did not read back intact")
    except (ModelLoadError, ConversionFailed):
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, output)
    return output
