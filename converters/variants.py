"""Models made from the given one, converted and reported side by side with it.

`run_variants` converts the model as given and each variant (a pruned copy, converters.prune; a
distilled student, converters.distill) in the same modes, and returns one report: the given
model's rows, then each variant's (variant "pruned 50%", "student mobilenet 0.25"), the gzip
size of each file, the latency with and without XNNPACK measured in the same run, and a section
per variant saying how it was made (sparsity reached, accuracy before and after; student size,
agreement with the teacher).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from converters.convert import Options, Result, run
from converters.errors import ConvertError
from converters.report import Report

logger = logging.getLogger(__name__)


@dataclass
class Variant:
    """A model made from the given one, converted in the same modes as it."""

    label: str  # "pruned 50%", "student mobilenet 0.25"
    section: str  # the report section with how it was made
    result: Result
    details: dict[str, Any]
    sample: np.ndarray  # one input, for the latency runs
    # Fills in what needs the merged report (the given model's rows and validation).
    finish: Callable[[Result], None] | None = None


# (options, scratch folder that outlives the variant's conversion) -> Variant
VariantMaker = Callable[[Options, Path], Variant]


def run_variants(options: Options, makers: list[VariantMaker]) -> Result:
    """Convert the given model and every variant; one report, the given model's rows first."""
    if len(makers) > 1 and not options.compare:
        raise ConvertError("pruning and distillation together go with --compare (-o writes one "
                           "model)")
    with tempfile.TemporaryDirectory(prefix="edge-convert-variants-") as tmp:
        folder = Path(tmp)
        variants = [make(options, folder) for make in makers]  # bad options fail before base
        base = run(replace(options, output=None if options.compare else folder / "base.tflite"))
    merged = base
    for variant in variants:
        merged = merge(merged, variant, options.compare)
        if variant.finish is not None:
            variant.finish(merged)
    add_latency_without_delegate(merged, variants[0].sample)
    for variant in variants:
        add_latency_without_delegate(merged, variant.sample, variant.label)
    return merged


def merge(base: Result, variant: Variant, compare: bool) -> Result:
    """`base`'s rows, then the variant's; with -o, the variant's file and exit status."""
    for entry in variant.result.report.modes:
        entry.variant = variant.label
    report: Report = base.report
    report.modes = base.report.modes + variant.result.report.modes
    report.sections[variant.section] = variant.details
    models = {**base.models,
              **{f"{variant.label}:{k}": v for k, v in variant.result.models.items()}}
    if compare:
        ok = any(m.status == "ok" for m in report.modes)
        return Result(report, 0 if ok else 1, None, "" if ok else "no mode passed", models)
    report.output = variant.result.report.output
    return Result(report, variant.result.exit_code, variant.result.written,
                  variant.result.message, models)


def add_latency_without_delegate(result: Result, x: np.ndarray, label: str = "") -> None:
    """Each verified mode's latency without XNNPACK next to the one with it (same run)."""
    from converters.prune import latency_variants

    for entry in result.report.modes:
        model = result.models.get(f"{label}:{entry.mode}" if label else entry.mode)
        if model is not None and entry.variant == label:
            timings = latency_variants(model, x)
            entry.latency_ms = timings["xnnpack"]
            entry.latency_no_delegate_ms = timings["no_delegate"]


def _training_data(options: Options, path: Path) -> Any:
    from converters.inputs import input_settings, read_label_names
    from converters.data import load_dataset
    from converters.loaders import LOADERS
    from converters.progress import Progress

    source = LOADERS["keras"].load(options.model)
    settings = input_settings(options, source)
    known = read_label_names(options.labels_file) if options.labels_file else ()
    data = load_dataset(path, settings, known, None, Progress(options.progress), "training")
    if data.labels is None:
        raise ConvertError(f"--train-data {path}: no labels (class subfolders, a 'y' array or "
                           f"--label-column); pruning fine-tunes on labeled data")
    return data


SPARSE_NOTE = (
    "float32/float16 files store the zeros sparse (DENSIFY ops): the file shrinks and XNNPACK "
    "may use its sparse kernels (Arm only: on x86 with AVX XNNPACK keeps dense kernels; and only "
    "for MobileNet-like float graphs); quantized files store zeros like other weights (sparse "
    "int8 weights do not load on ai-edge-litert 2.3), so only their gzip size shrinks")


def pruning(sparsity: float, train_data: Path | None, epochs: int) -> VariantMaker:
    """The maker of the --prune variant (options checked when it runs, before any conversion)."""

    def make(options: Options, folder: Path) -> Variant:
        import keras

        from converters.loaders import find_loader
        from converters.prune import prune

        if not 0.0 < sparsity < 1.0:
            raise ConvertError(f"--prune {sparsity}: give the share of weights to remove, "
                               f"between 0 and 1 (0.5 = half)")
        if find_loader(options.model).name != "keras":
            raise ConvertError(f"--prune works on Keras models (.keras, .h5); {options.model} "
                               f"is not one")
        if train_data is None:
            raise ConvertError("--prune needs --train-data (labeled samples to fine-tune on)")
        data = _training_data(options, train_data)
        model = keras.models.load_model(options.model, compile=False)
        outcome = prune(model, data.x, data.labels, sparsity, epochs)
        path = folder / f"{options.model.stem}_pruned{int(round(sparsity * 100))}.keras"
        model.save(path)
        result = run(replace(options, model=path, sparse_weights=True,
                             made_from=(options.model, f"pruned {sparsity:.0%}")))
        details = {**outcome.to_dict(),
                   "accuracy_after": result.report.validation.get("reference_accuracy"),
                   "note": SPARSE_NOTE}

        def finish(merged: Result) -> None:
            details["accuracy_before"] = merged.report.validation.get("reference_accuracy")

        return Variant(f"pruned {sparsity:.0%}", "pruning", result, details, data.x[:1], finish)

    return make


def pruning_summary(details: dict[str, Any]) -> str:
    before, after = details.get("accuracy_before"), details.get("accuracy_after")
    accuracy = (f"; source accuracy {before:.2%} -> {after:.2%}"
                if before is not None and after is not None else "")
    return (f"pruning: {details['sparsity']:.1%} of {details['pruned_weights']} kernel weights "
            f"are zero (target {details['target_sparsity']:.0%}), fine-tuned {details['epochs']} "
            f"epochs on {details['train_samples']} samples{accuracy}")
