"""Whether a converted mode is accepted: run like the daemon, scored against the source model.

`verify_mode` fills a mode's report entry from running the file as it will ship (metadata
included): the daemon's loader must take it, its outputs must match the source model's, the
tflite-runtime checks must pass, and the accuracy drop must stay within --max-accuracy-drop;
otherwise the entry is marked failed or rejected with the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from converters.data import Dataset
from converters.options import Options
from converters.progress import Progress
from converters.prune import gzip_size
from converters.report import ModeReport
from converters.runtime_check import check, targets
from converters.verify import TfliteRun, run_tflite, score
from edge_runtime.model.tflite_model import ModelLoadError, TfliteModel


def verify_mode(entry: ModeReport, candidate: Path, runtime: Any, validation: Dataset,
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
