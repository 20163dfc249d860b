"""Models made from the given one, converted and reported side by side with it.

`run_pruned` converts the model as given and a pruned copy (converters.prune) in the same modes,
and returns one report: the given model's rows, then the pruned model's rows (variant "pruned
50%"), the gzip size of each file, the latency with and without XNNPACK, and a "pruning" section
(sparsity reached, accuracy before and after on the validation data). converters.distill does the
same for a teacher and its student with `merge`.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from converters.convert import Options, Result, run
from converters.errors import ConvertError
from converters.report import Report

logger = logging.getLogger(__name__)


def merge(base: Result, variant: Result, label: str, section: str,
          details: dict[str, Any]) -> Result:
    """`variant`'s exit status and written file; `base`'s rows first, then `variant`'s."""
    for entry in variant.report.modes:
        entry.variant = label
    report: Report = base.report
    report.modes = base.report.modes + variant.report.modes
    report.sections[section] = details
    report.output = variant.report.output
    return Result(report, variant.exit_code, variant.written, variant.message,
                  {**base.models, **{f"{label}:{k}": v for k, v in variant.models.items()}})


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
    from converters.convert import _input_settings, read_label_names
    from converters.data import load_dataset
    from converters.loaders import LOADERS
    from converters.progress import Progress

    source = LOADERS["keras"].load(options.model)
    settings = _input_settings(options, source)
    known = read_label_names(options.labels_file) if options.labels_file else ()
    data = load_dataset(path, settings, known, None, Progress(options.progress), "training")
    if data.labels is None:
        raise ConvertError(f"--train-data {path}: no labels (class subfolders, a 'y' array or "
                           f"--label-column); pruning fine-tunes on labeled data")
    return data, source


def run_pruned(options: Options, sparsity: float, train_data: Path | None,
               epochs: int) -> Result:
    import keras

    from converters.loaders import find_loader
    from converters.prune import prune

    if not 0.0 < sparsity < 1.0:
        raise ConvertError(f"--prune {sparsity}: give the share of weights to remove, "
                           f"between 0 and 1 (0.5 = half)")
    if find_loader(options.model).name != "keras":
        raise ConvertError(f"--prune works on Keras models (.keras, .h5); {options.model} is "
                           f"not one")
    if train_data is None:
        raise ConvertError("--prune needs --train-data (labeled samples to fine-tune on)")
    data, source = _training_data(options, train_data)
    with tempfile.TemporaryDirectory(prefix="edge-convert-prune-") as tmp:
        folder = Path(tmp)
        dense = run(replace(options, output=None if options.compare else folder / "dense.tflite"))
        model = keras.models.load_model(options.model, compile=False)
        outcome = prune(model, data.x, data.labels, sparsity, epochs)
        pruned_path = folder / f"{options.model.stem}_pruned{int(round(sparsity * 100))}.keras"
        model.save(pruned_path)
        pruned = run(replace(options, model=pruned_path))
    label = f"pruned {sparsity:.0%}"
    details = {**outcome.to_dict(),
               "accuracy_before": dense.report.validation.get("reference_accuracy"),
               "accuracy_after": pruned.report.validation.get("reference_accuracy"),
               "note": ("a .tflite file stores zeros like other weights: pruning shrinks the "
                        "compressed file (gzip), not the file; XNNPACK's sparse inference is not "
                        "reachable from the Python runtimes, so latency is the dense model's")}
    merged = merge(dense, pruned, label, "pruning", details)
    sample = data.x[:1]
    add_latency_without_delegate(merged, sample)
    add_latency_without_delegate(merged, sample, label)
    return merged


def pruning_summary(details: dict[str, Any]) -> str:
    before, after = details.get("accuracy_before"), details.get("accuracy_after")
    accuracy = (f"; source accuracy {before:.2%} -> {after:.2%}"
                if before is not None and after is not None else "")
    return (f"pruning: {details['sparsity']:.1%} of {details['pruned_weights']} kernel weights "
            f"are zero (target {details['target_sparsity']:.0%}), fine-tuned {details['epochs']} "
            f"epochs on {details['train_samples']} samples{accuracy}")
