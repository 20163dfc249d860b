"""The input side: a registry of loaders, one per source format, each giving a SourceModel.

A SourceModel runs the original model (the reference for verification) and builds the
TFLiteConverter for it. PyTorch and ONNX loaders (converters.frameworks) run in virtualenvs of
their own and are registered here too.
TensorFlow is imported inside the functions so that `edge-convert --help` stays fast.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from converters.errors import ConvertError
from edge_runtime.model.tflite_model import TensorSpec

logger = logging.getLogger(__name__)

PREDICT_BATCH = 64


@dataclass(frozen=True)
class ConversionInput:
    """What the conversion worker (converters.conversion) is handed for a source model."""

    loader: str  # the loader the worker loads `model` with
    model: Path
    # Interpreter and module of the worker; () is this Python's converters._convert_worker.
    command: tuple[str, ...] = ()
    job: dict[str, Any] = field(default_factory=dict)  # more keys for the job file


@dataclass
class SourceModel:
    """A loaded source model with a single input; the batch dimension is fixed to 1."""

    path: Path
    loader: str
    framework: str
    input: TensorSpec
    # A batch of inputs [N, ...] -> one array [N, ...] per output, in the TFLite output order.
    run_batch: Callable[[np.ndarray], list[np.ndarray]]
    # (scratch folder) -> tf.lite.TFLiteConverter for the model with a batch-1 signature.
    make_converter: Callable[[Path], Any]
    # The source model's own input layout when it differs from `input` (an NCHW model whose
    # converted form takes NHWC); "" when the device feeds the layout the source model takes.
    source_layout: str = ""
    # None: the worker converts (self.loader, self.path) with make_converter.
    conversion: ConversionInput | None = None
    # The converter keeps float32 input/output tensors in every mode (ai-edge-quantizer).
    float_io_only: bool = False
    predict_batch: int = PREDICT_BATCH

    def predict(self, x: np.ndarray) -> list[np.ndarray]:
        parts: list[list[np.ndarray]] = []
        for start in range(0, len(x), self.predict_batch):
            parts.append(self.run_batch(x[start : start + self.predict_batch]))
        return [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]


@dataclass(frozen=True)
class Loader:
    name: str
    framework: str
    description: str
    matches: Callable[[Path], bool]
    load: Callable[[Path], SourceModel]


def _input_spec(name: str, shape: Any, dtype: Any, path: Path) -> TensorSpec:
    dims = list(shape)
    if not dims:
        raise ConvertError(f"{path}: the model input {name!r} is a scalar; expected a tensor")
    if any(d is None or d < 0 for d in dims[1:]):
        raise ConvertError(
            f"{path}: the model input {name!r} has shape {dims} with unknown dimensions besides "
            f"the batch; give the model a fixed input shape before converting"
        )
    return TensorSpec(name=name, index=0, shape=(1, *(int(d) for d in dims[1:])),
                      dtype=np.dtype(dtype))


def _load_keras(path: Path) -> SourceModel:
    import keras
    import tensorflow as tf

    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for bad files
        raise ConvertError(f"{path}: cannot load as a Keras model ({_first_line(exc)})") from exc
    if len(model.inputs) != 1:
        raise ConvertError(
            f"{path}: the model has {len(model.inputs)} inputs; only one is supported")
    tensor = model.inputs[0]
    name = getattr(tensor, "name", "input") or "input"
    spec = _input_spec(name, tensor.shape, tensor.dtype, path)

    def run_batch(x: np.ndarray) -> list[np.ndarray]:
        out = model(x, training=False)
        outs = out if isinstance(out, (list, tuple)) else [out]
        return [_to_numpy(o) for o in outs]

    def make_converter(scratch: Path) -> Any:
        # A batch-1 signature gives every tensor a static shape: the device runs one frame at a
        # time, and recurrent layers only convert with static shapes. Keras' ExportArchive
        # writes the variables so the converter can freeze them (a plain tf.function over a
        # Keras 3 model leaves them unresolved and calibration fails on READ_VARIABLE).
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(
            "serve",
            lambda t: model(t, training=False),
            input_signature=[tf.TensorSpec(spec.shape, tf.as_dtype(spec.dtype), name="input")],
        )
        archive.write_out(str(scratch / "saved_model"), verbose=False)
        return tf.lite.TFLiteConverter.from_saved_model(
            str(scratch / "saved_model"), signature_keys=["serve"]
        )

    return SourceModel(path, "keras", "keras", spec, run_batch, make_converter)


def _load_saved_model(path: Path) -> SourceModel:
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:
        raise ConvertError(f"{path}: cannot load as a SavedModel ({_first_line(exc)})") from exc
    signature = loaded.signatures.get("serving_default")
    if signature is None:
        raise ConvertError(
            f"{path}: the SavedModel has no 'serving_default' signature "
            f"(it has: {', '.join(loaded.signatures) or 'none'})"
        )
    _, kwargs = signature.structured_input_signature
    if len(kwargs) != 1:
        raise ConvertError(f"{path}: the signature has {len(kwargs)} inputs; only one is supported")
    (arg_name, arg_spec), = kwargs.items()
    spec = _input_spec(arg_name, arg_spec.shape.as_list(), arg_spec.dtype.as_numpy_dtype, path)
    output_names = sorted(signature.structured_outputs)

    def call(t: Any) -> list[Any]:
        result = signature(**{arg_name: t})
        return [result[k] for k in output_names]

    def run_batch(x: np.ndarray) -> list[np.ndarray]:
        return [_to_numpy(o) for o in call(tf.constant(x))]

    def make_converter(scratch: Path) -> Any:
        # The converter's own SavedModel path; a batch dimension of None becomes 1 in TFLite.
        return tf.lite.TFLiteConverter.from_saved_model(
            str(path), signature_keys=["serving_default"]
        )

    return SourceModel(path, "saved_model", "tensorflow", spec, run_batch, make_converter)


LOADERS: dict[str, Loader] = {
    "keras": Loader(
        "keras", "keras", "Keras model file (.keras, .h5)",
        lambda p: p.is_file() and p.suffix.lower() in (".keras", ".h5", ".hdf5"),
        _load_keras,
    ),
    "saved_model": Loader(
        "saved_model", "tensorflow", "TensorFlow SavedModel folder",
        lambda p: p.is_dir() and (p / "saved_model.pb").is_file(),
        _load_saved_model,
    ),
    # Run by workers in virtualenvs of their own (converters.frameworks).
    "pytorch": Loader(
        "pytorch", "pytorch", "PyTorch torch.export program (.pt2)",
        lambda p: p.is_file() and p.suffix.lower() == ".pt2",
        lambda p: _frameworks().load_pytorch(p),
    ),
    "onnx": Loader(
        "onnx", "onnx", "ONNX model (.onnx)",
        lambda p: p.is_file() and p.suffix.lower() == ".onnx",
        lambda p: _frameworks().load_onnx(p),
    ),
}


def _frameworks() -> Any:
    from converters import frameworks  # imports this module: not at the top

    return frameworks


def find_loader(path: Path) -> Loader:
    """The loader for `path`, or ConvertError saying what is accepted."""
    if not path.exists():
        raise ConvertError(f"{path}: no such file or folder")
    for loader in LOADERS.values():
        if loader.matches(path):
            return loader
    accepted = "; ".join(loader.description for loader in LOADERS.values())
    raise ConvertError(f"{path}: not a model edge-convert can read (accepted: {accepted})")


def source_sha256(path: Path) -> str:
    """sha256 of the model file, or of a folder's files (relative names and contents, in order)."""
    digest = hashlib.sha256()
    if path.is_file():
        files = [path]
    else:
        files = sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _to_numpy(value: Any) -> np.ndarray:
    # .numpy() first: np.asarray on a TF tensor goes through a deprecated __array__ path.
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value, dtype=np.float32)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
