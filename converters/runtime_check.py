"""Check, in a fresh subprocess per runtime, that a converted model loads and answers the same.

ai-edge-litert is checked with this Python; tflite-runtime 2.14 needs numpy < 2, so it is
checked with a separate interpreter (--tflite-runtime-python, $EDGE_CONVERT_TFLITE_RUNTIME_PYTHON or
the checkout's .venv-tflite) or reported as skipped.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

PROBE = Path(__file__).resolve().parent / "_runtime_probe.py"
TFLITE_RUNTIME_PYTHON_ENV = "EDGE_CONVERT_TFLITE_RUNTIME_PYTHON"
# Without either, the checkout's own tflite-runtime virtualenv (deploy/run-tests.sh makes it), as
# the PyTorch and ONNX workers default to .venv-torch and .venv-onnx (frameworks.py).
CHECKOUT_TFLITE_RUNTIME_PYTHON = Path(__file__).resolve().parent.parent / ".venv-tflite" / "bin" / "python"
CHECK_SAMPLES = 64
# Runtimes may use different kernels (XNNPACK or not); a handful of flipped near-ties is normal.
MIN_AGREEMENT = 0.95


@dataclass(frozen=True)
class RuntimeCheck:
    runtime: str
    status: str  # "ok", "failed" or "skipped"
    detail: str
    version: str | None = None
    agreement: float | None = None
    max_abs_diff: float | None = None
    latency_ms: float | None = None  # median invoke time in the check process (one thread)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def summary(self) -> str:
        latency = f" {self.latency_ms:.3f} ms" if self.latency_ms is not None else ""
        return f"{self.runtime} {self.status}{latency}"

    def line(self) -> str:
        version = f" {self.version}" if self.version else ""
        return f"{self.runtime}{version}: {self.status}: {self.detail}"


@dataclass(frozen=True)
class Target:
    runtime: str
    python: str | None  # None: not available, skip


def targets(tflite_runtime_python: str | None) -> list[Target]:
    python = tflite_runtime_python or os.environ.get(TFLITE_RUNTIME_PYTHON_ENV) or None
    if python is None and CHECKOUT_TFLITE_RUNTIME_PYTHON.exists():
        python = str(CHECKOUT_TFLITE_RUNTIME_PYTHON)
    return [Target("ai-edge-litert", sys.executable), Target("tflite-runtime", python)]


def check(
    target: Target,
    model_path: Path,
    raw_inputs: np.ndarray,
    expected_raw: list[np.ndarray],
    output_scales: list[tuple[float, int]],
    workdir: Path,
    timeout_s: float = 300.0,
) -> RuntimeCheck:
    """Run the model on `target` and compare with the in-process outputs `expected_raw`."""
    if target.python is None:
        return RuntimeCheck(
            target.runtime, "skipped",
            f"no Python with {target.runtime} given (it needs numpy<2: make a virtualenv with "
            f"'pip install tflite-runtime==2.14.0 \"numpy<2\"' and pass --tflite-runtime-python "
            f"or set {TFLITE_RUNTIME_PYTHON_ENV})",
        )
    count = min(CHECK_SAMPLES, len(raw_inputs))
    inputs_path = workdir / f"probe-{target.runtime}-in.npy"
    outputs_path = workdir / f"probe-{target.runtime}-out.npz"
    outputs_path.unlink(missing_ok=True)
    np.save(inputs_path, raw_inputs[:count])
    command = [target.python, str(PROBE), target.runtime, str(model_path), str(inputs_path),
               str(outputs_path)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return RuntimeCheck(target.runtime, "failed", f"cannot run {target.python}")
    except subprocess.TimeoutExpired:
        return RuntimeCheck(target.runtime, "failed", f"no answer within {timeout_s:.0f} s")
    result = _last_json(done.stdout)
    if done.returncode != 0 or result is None:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return RuntimeCheck(target.runtime, "failed",
                            f"the check process exited with status {done.returncode}: {tail}")
    version = result.get("version")
    if "error" in result:
        return RuntimeCheck(target.runtime, "failed", f"cannot run the model: {result['error']}",
                            version)
    with np.load(outputs_path, allow_pickle=False) as archive:
        got = [archive[f"arr_{k}"] for k in range(len(archive.files))]
    checked = _compare(target.runtime, version, got, [e[:count] for e in expected_raw],
                       output_scales)
    latency = result.get("latency_ms")
    return replace(checked, latency_ms=float(latency)) if latency is not None else checked


def _compare(runtime: str, version: str | None, got: list[np.ndarray],
             expected: list[np.ndarray], scales: list[tuple[float, int]]) -> RuntimeCheck:
    if len(got) != len(expected) or any(g.shape != e.shape for g, e in zip(got, expected)):
        return RuntimeCheck(runtime, "failed", "outputs have different shapes", version)

    def real(values: np.ndarray, scale: tuple[float, int]) -> np.ndarray:
        s, zero = scale
        values = values.astype(np.float32)
        return (values - zero) * s if s else values

    got_real = [real(g, s).reshape(len(g), -1) for g, s in zip(got, scales)]
    want_real = [real(e, s).reshape(len(e), -1) for e, s in zip(expected, scales)]
    max_diff = float(max(np.abs(g - w).max() for g, w in zip(got_real, want_real)))
    agreement = None
    if got_real[0].shape[1] > 1:
        agreement = float(np.mean(got_real[0].argmax(1) == want_real[0].argmax(1)))
    if agreement is not None and agreement < MIN_AGREEMENT:
        return RuntimeCheck(runtime, "failed",
                            f"top-1 agrees on only {agreement:.1%} of {len(got[0])} samples",
                            version, agreement, max_diff)
    detail = f"loads and runs {len(got[0])} samples"
    detail += f", top-1 agreement {agreement:.1%}" if agreement is not None else ""
    return RuntimeCheck(runtime, "ok", detail + f", max |diff| {max_diff:.3g}", version,
                        agreement, max_diff)


def _last_json(text: str) -> dict[str, Any] | None:
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None
