"""PyTorch (.pt2 from torch.export) and ONNX (.onnx) source models.

Neither framework is imported here: each lives in a virtualenv of its own
(deploy/setup-convert-venvs.sh) and converters/_framework_worker.py runs there, so edge-convert's
own environment keeps TensorFlow 2.21 and numpy 2 (onnx2tf pins TensorFlow 2.19 and numpy 1.26).

- ONNX: onnx2tf turns the model into a SavedModel with NHWC inputs, once, when it is loaded; the
  conversion worker then quantizes that SavedModel with TFLiteConverter like any other, so every
  mode and I/O type applies. The reference outputs come from onnxruntime on the .onnx file.
- PyTorch: litert-torch converts the program to a float .tflite and ai-edge-quantizer makes the
  quantized modes (converters/_torch_convert_worker.py, in the torch virtualenv). The reference
  outputs come from torch running the .pt2 program.

A 4-D input is taken as NCHW, the layout both frameworks use for images. The converted model takes
NHWC, which is what the device's preprocessing writes (the metadata says layout "nhwc"); the
reference runs are handed the same values transposed back to NCHW.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from converters.errors import ConvertError
from converters.loaders import ConversionInput, SourceModel, _input_spec

logger = logging.getLogger(__name__)

WORKER = Path(__file__).resolve().parent / "_framework_worker.py"
REPO = Path(__file__).resolve().parent.parent
TORCH_PYTHON_ENV = "EDGE_CONVERT_TORCH_PYTHON"
ONNX_PYTHON_ENV = "EDGE_CONVERT_ONNX_PYTHON"
# Enough for the largest model a Pi runs; the first call also imports the framework.
WORKER_TIMEOUT_S = 1800.0
# One worker run handles a whole batch (starting torch or onnxruntime costs seconds).
WORKER_BATCH = 4096


def framework_python(framework: str) -> str:
    """The Python of the virtualenv that holds `framework`, or ConvertError saying how to make it."""
    env, venv, extra = {"pytorch": (TORCH_PYTHON_ENV, ".venv-torch", "torch"),
                        "onnx": (ONNX_PYTHON_ENV, ".venv-onnx", "onnx")}[framework]
    given = os.environ.get(env)
    python = Path(given) if given else REPO / venv / "bin" / "python"
    if not python.exists():
        raise ConvertError(
            f"{framework} input needs its own virtualenv, and {python} does not exist: run "
            f"'bash deploy/setup-convert-venvs.sh {extra}' in the edge-runtime checkout "
            f"(or set {env} to a Python with 'pip install edge-runtime[{extra}]')")
    return str(python)


def call_worker(python: str, *args: str, timeout_s: float = WORKER_TIMEOUT_S) -> dict[str, Any]:
    """Run the framework worker; its JSON answer, or ConvertError with the worker's reason."""
    try:
        done = subprocess.run([python, str(WORKER), *args], capture_output=True, text=True,
                              timeout=timeout_s, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ConvertError(f"{args[0]} {args[-1]}: no answer within {timeout_s:.0f} s") from None
    answer = None
    for line in reversed(done.stdout.strip().splitlines()):
        try:
            answer = json.loads(line)
            break
        except json.JSONDecodeError:
            continue
    if done.returncode != 0 or not isinstance(answer, dict):
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConvertError(f"the {python} worker exited with status {done.returncode}: {tail}")
    if "error" in answer:
        raise ConvertError(str(answer["error"]))
    return answer


def _single_input(path: Path, described: dict[str, Any]) -> dict[str, Any]:
    inputs = described["inputs"]
    if len(inputs) != 1:
        raise ConvertError(f"{path}: the model has {len(inputs)} inputs; only one is supported")
    spec = inputs[0]
    if spec["dtype"] not in ("float32", "float16"):
        raise ConvertError(f"{path}: the model input {spec['name']!r} is {spec['dtype']}; "
                           f"only float inputs convert")
    return spec


def _device_shape(shape: list[int]) -> tuple[list[int], str]:
    """(shape the device feeds, source layout): NCHW images become NHWC."""
    if len(shape) == 4:
        n, c, h, w = shape
        return [n, h, w, c], "nchw"
    return list(shape), ""


def _reference(python: str, framework: str, path: Path, layout: str, scratch: Path) -> Any:
    def run_batch(x: np.ndarray) -> list[np.ndarray]:
        inputs, outputs = scratch / "reference-in.npy", scratch / "reference-out.npz"
        np.save(inputs, np.ascontiguousarray(x, dtype=np.float32))
        call_worker(python, "run", framework, str(path), str(inputs), str(outputs),
                    "nhwc-to-nchw" if layout == "nchw" else "none")
        with np.load(outputs, allow_pickle=False) as archive:
            return [archive[f"arr_{k}"] for k in range(len(archive.files))]

    return run_batch


def _no_converter(scratch: Path) -> Any:
    raise ConvertError("this source model converts in its own worker, not with TFLiteConverter")


@dataclass(frozen=True)
class _Described:
    """What the framework worker says of a model's one input, and a scratch folder."""

    python: str
    spec: dict[str, Any]  # the source model's input: name, shape
    tensor: Any  # the input as the device feeds it (NHWC for images)
    layout: str  # the source layout when it is not the device's ("nchw"), else ""
    scratch: Path


def _describe(framework: str, path: Path) -> _Described:
    python = framework_python(framework)
    spec = _single_input(path, call_worker(python, "describe", framework, str(path)))
    shape, layout = _device_shape(spec["shape"])
    tensor = _input_spec(spec["name"], shape, np.float32, path)
    scratch = Path(tempfile.mkdtemp(prefix=f"edge-convert-{framework}-"))
    return _Described(python, spec, tensor, layout, scratch)


def load_onnx(path: Path) -> SourceModel:
    d = _describe("onnx", path)
    python, tensor, layout, scratch = d.python, d.tensor, d.layout, d.scratch
    saved_model = scratch / "saved_model"
    logger.info("onnx2tf: converting %s to a SavedModel", path)
    call_worker(python, "onnx2tf", str(path), str(saved_model), "0" if layout else "1")
    if not (saved_model / "saved_model.pb").is_file():
        raise ConvertError(f"{path}: onnx2tf wrote no SavedModel")
    source = SourceModel(
        path, "onnx", "onnx", tensor, _reference(python, "onnx", path, layout, scratch),
        _no_converter, source_layout=layout,
        conversion=ConversionInput("saved_model", saved_model),
        predict_batch=WORKER_BATCH,
    )
    weakref.finalize(source, shutil.rmtree, scratch, True)
    return source


def load_pytorch(path: Path) -> SourceModel:
    d = _describe("pytorch", path)
    python, tensor, layout, scratch = d.python, d.tensor, d.layout, d.scratch
    source_shape = [1, *d.spec["shape"][1:]]
    source = SourceModel(
        path, "pytorch", "pytorch", tensor, _reference(python, "pytorch", path, layout, scratch),
        _no_converter, source_layout=layout,
        conversion=ConversionInput(
            "pytorch", path, (python, "-m", "converters._torch_convert_worker"),
            {"input_shape": source_shape, "layout": layout or "nhwc"}),
        float_io_only=True,
        predict_batch=WORKER_BATCH,
    )
    weakref.finalize(source, shutil.rmtree, scratch, True)
    return source

