"""Run a converted model the way the daemon does and compare it with the source model."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from converters.progress import Progress
from edge_runtime.model.runtime import Runtime
from edge_runtime.model.tflite_model import TensorSpec, TfliteModel, dequantize
from edge_runtime.preprocessing import PreprocessSpec
from edge_runtime.preprocessing.spec import affine_to_input, store

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scores:
    """How well outputs match labels (accuracy) and the source model (agreement, differences)."""

    accuracy: float | None
    agreement: float | None
    max_abs_diff: float
    mean_abs_diff: float


@dataclass
class TfliteRun:
    outputs: list[np.ndarray]  # dequantized float32, one array [N, ...] per output
    raw_inputs: np.ndarray  # what was fed, in the model's input dtype (for the runtime checks)
    raw_outputs: list[np.ndarray]
    latency_ms: float  # median invoke time


def to_input(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Model inputs (real values) in the tensor's dtype, quantized like the daemon does it."""
    gain, offset = affine_to_input(PreprocessSpec(), spec, 1)
    values = x.astype(np.float32) * gain + offset
    out = np.empty(values.shape, dtype=spec.dtype)
    store(values, out)
    return out


def interpreter_input(x: np.ndarray, details: dict[str, Any]) -> np.ndarray:
    """`x` for an interpreter's input tensor given by its details (`get_input_details()[i]`),
    quantized as the daemon does it: for code that drives an interpreter itself."""
    spec = TensorSpec.from_details(details)
    return to_input(x.reshape(spec.shape), spec)


def run_tflite(path: Path, runtime: Runtime, x: np.ndarray, progress: Progress,
               label: str) -> tuple[TfliteModel, TfliteRun]:
    """Load `path` with the daemon's TfliteModel and run it on every sample of `x`."""
    model = TfliteModel(path, runtime, threads=1)
    spec = model.inputs[0]
    raw_inputs = to_input(x.reshape(len(x), *spec.shape[1:]), spec)
    raw = [np.empty((len(x), *o.shape[1:]), o.dtype) for o in model.outputs]
    times = np.empty(len(x))
    for i in progress.iterate(range(len(x)), f"validating {label}", len(x)):
        model.set_input(0, raw_inputs[i : i + 1])
        start = time.perf_counter()
        model.invoke()
        times[i] = time.perf_counter() - start
        for k in range(len(model.outputs)):
            raw[k][i] = model.raw_output(k)[0]
    outputs = [dequantize(r, o) for r, o in zip(raw, model.outputs)]
    return model, TfliteRun(outputs, raw_inputs, raw, float(np.median(times) * 1000.0))


def top1(outputs: list[np.ndarray]) -> np.ndarray | None:
    """Predicted class per sample from the first output, when it looks like class scores."""
    first = outputs[0].reshape(len(outputs[0]), -1)
    return first.argmax(axis=1) if first.shape[1] > 1 else None


def pair_outputs(outputs: list[np.ndarray], reference: list[np.ndarray]) -> list[np.ndarray]:
    """The source model's outputs in the .tflite file's output order.

    The converter may order several outputs differently from the source model; outputs are
    matched by per-sample shape, keeping the source order among outputs of equal shape.
    ValueError when they cannot be matched.
    """
    if len(outputs) != len(reference):
        raise ValueError(f"the .tflite file has {len(outputs)} outputs, the source model "
                         f"{len(reference)}")
    left = list(range(len(reference)))
    paired = []
    for out in outputs:
        match = next((i for i in left if reference[i].shape[1:] == out.shape[1:]), None)
        if match is None:
            match = next((i for i in left if reference[i][0].size == out[0].size), None)
        if match is None:
            raise ValueError(
                f"no source output matches the .tflite output of shape {list(out.shape[1:])} "
                f"(source outputs: {[list(r.shape[1:]) for r in reference]})")
        left.remove(match)
        paired.append(reference[match])
    return paired


def score(outputs: list[np.ndarray], reference: list[np.ndarray],
          labels: np.ndarray | None, classification: bool) -> Scores:
    reference = pair_outputs(outputs, reference)
    diffs = [np.abs(o.reshape(len(o), -1) - r.reshape(len(r), -1))
             for o, r in zip(outputs, reference)]
    max_diff = float(max(d.max() for d in diffs)) if diffs else 0.0
    mean_diff = float(np.mean([d.mean() for d in diffs])) if diffs else 0.0
    accuracy = agreement = None
    predicted = top1(outputs) if classification else None
    if predicted is not None:
        expected = top1(reference)
        agreement = float(np.mean(predicted == expected))
        if labels is not None:
            accuracy = float(np.mean(predicted == labels))
    return Scores(accuracy, agreement, max_diff, mean_diff)


def reference_accuracy(reference: list[np.ndarray], labels: np.ndarray | None) -> float | None:
    predicted = top1(reference)
    if predicted is None or labels is None:
        return None
    return float(np.mean(predicted == labels))
