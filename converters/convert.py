"""The conversion pipeline: load, read data, convert per mode, verify, embed metadata, write.

`run(options)` returns the report and the exit status; converters.cli only parses arguments
and prints. The options and their checks are in converters.options, the input settings and data in
converters.inputs, a mode's verdict in converters.acceptance, what the model carries in
converters.stamp.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from converters.acceptance import verify_mode
from converters.conversion import ConversionJob, convert_all
from converters.errors import ConversionFailed, ConvertError
from converters.inputs import input_settings, load_inputs, read_label_names
from converters.loaders import ConversionInput, find_loader, source_sha256
from converters.metadata_writer import embed_metadata
from converters.modes import MODE_NAMES, MODES
from converters.options import Options, check_options, source_io_types
from converters.progress import Progress
from converters.report import ModeReport, Report
from converters.stamp import converter_version, model_metadata, source_doc, verification_doc
from converters.verify import reference_accuracy
from edge_runtime.model.metadata import ModelMetadata, read_model_metadata
from edge_runtime.model.runtime import RuntimeUnavailable, select_runtime
from edge_runtime.model.tflite_model import ModelLoadError, TfliteModel

logger = logging.getLogger(__name__)

VERIFY_RUNTIME = "ai-edge-litert"  # the daemon's default runtime

__all__ = ["Options", "Result", "run"]


@dataclass
class Result:
    report: Report
    exit_code: int
    written: Path | None = None
    message: str = ""  # why nothing was written, when exit_code is not 0
    models: dict[str, bytes] = field(default_factory=dict)  # mode -> verified .tflite bytes


def run(options: Options) -> Result:
    io_types = check_options(options)
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
    io_types = source_io_types(options, source, io_types)
    conversion = source.conversion or ConversionInput(loader.name, options.model)
    sha256 = source_sha256(options.model)
    settings = input_settings(options, source)
    logger.info("loaded %s (%s), input %s %s", options.model, loader.name,
                list(source.input.shape), source.input.dtype)
    inputs = load_inputs(options, settings, known_labels, progress)
    validation, calibration = inputs.validation, inputs.calibration
    labels = tuple(known_labels) or validation.class_names
    classification = options.task == "classification"

    reference = source.predict(validation.x)
    ref_accuracy = reference_accuracy(reference, validation.labels) if classification else None
    if options.max_accuracy_drop is not None and (
            not classification or reference[0].reshape(len(validation), -1).shape[1] < 2):
        raise ConvertError("--max-accuracy-drop needs a classification model with class scores")

    report = Report(
        source={**source_doc(source, sha256, options.made_from), "loader": loader.name,
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
        return model_metadata(options, settings, source, sha256, labels, mode, io_type,
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
            verify_mode(entry, candidate, runtime, validation, reference, ref_accuracy,
                        classification, options, workdir, progress)
            if entry.status == "ok":
                final = metadata(mode, io_type, verification_doc(entry, report))
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
