"""A loaded .tflite model: its tensors, its metadata and an interpreter to run it."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np

from edge_runtime.model.flatbuffer import FlatbufferError, check_tflite
from edge_runtime.model.metadata import MetadataError, ModelMetadata, read_model_metadata
from edge_runtime.model.runtime import Runtime

logger = logging.getLogger(__name__)
T = TypeVar("T")


class ModelLoadError(ValueError):
    """A model file that cannot be used; the message names the file and the reason."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor, with its per-tensor quantization (scale 0 = not quantized)."""

    name: str
    index: int
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float = 0.0
    zero_point: int = 0

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0 and np.issubdtype(self.dtype, np.integer)

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype.name}
        if self.quantized:
            doc["quantization"] = {"scale": self.scale, "zero_point": self.zero_point}
        return doc

    @classmethod
    def from_details(cls, details: dict[str, Any]) -> TensorSpec:
        scale, zero_point = details.get("quantization", (0.0, 0))
        return cls(
            name=str(details["name"]),
            index=int(details["index"]),
            shape=tuple(int(x) for x in details["shape"]),
            dtype=np.dtype(details["dtype"]),
            scale=float(scale),
            zero_point=int(zero_point),
        )


def dequantize(values: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Real-valued float32 copy of an output tensor."""
    if spec.quantized:
        return (values.astype(np.float32) - spec.zero_point) * np.float32(spec.scale)
    return values.astype(np.float32, copy=True)


class TfliteModel:
    """An interpreter with its tensors allocated, plus what we know about the file."""

    def __init__(
        self,
        path: Path | str,
        runtime: Runtime,
        threads: int = 1,
        delegate: Any = None,
    ) -> None:
        self.path = Path(path)
        self.runtime = runtime
        data = self._read(self.path)
        self.sha256 = hashlib.sha256(data).hexdigest()
        self.size_bytes = len(data)
        try:
            self.metadata: ModelMetadata | None = read_model_metadata(data)
        except (FlatbufferError, MetadataError) as exc:
            raise ModelLoadError(self.path, str(exc)) from exc
        self._content = data
        self._delegate = delegate
        # Called before every invoke when set: test-only fault injection (supervision/
        # fault_injection.py, installed where models are loaded); it may raise or hang.
        self.fault: Callable[[], None] | None = None
        self.threads = max(1, threads)
        self._interpreter = self._make_interpreter(self.threads)
        self.inputs = [TensorSpec.from_details(d) for d in self._interpreter.get_input_details()]
        self.outputs = [TensorSpec.from_details(d) for d in self._interpreter.get_output_details()]

    def _make_interpreter(self, threads: int) -> Any:
        kwargs: dict[str, Any] = {"model_content": self._content, "num_threads": threads}
        if self._delegate is not None:
            kwargs["experimental_delegates"] = [self._delegate]
        try:
            interpreter = self.runtime.interpreter_class(**kwargs)
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelLoadError(
                self.path,
                f"{self.runtime.name} cannot load it: {str(exc).strip().splitlines()[0]}"
            ) from exc
        return interpreter

    def set_threads(self, threads: int) -> None:
        """Run on `threads` threads from now on: a new interpreter for the same file (the tensors
        keep their shapes and indexes). Only the thread that invokes may call it; CPU only (a
        delegate's handle belongs to the interpreter it was given to)."""
        if self._delegate is not None:
            raise ValueError(f"{self.path}: the thread count of a delegated model is fixed")
        self._interpreter = self._make_interpreter(max(1, threads))
        self.threads = max(1, threads)

    @staticmethod
    def _read(path: Path) -> bytes:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ModelLoadError(path, "no such file") from None
        except IsADirectoryError:
            raise ModelLoadError(path, "is a directory, not a .tflite file") from None
        except OSError as exc:
            raise ModelLoadError(path, f"cannot read ({exc.strerror})") from None
        if not data:
            raise ModelLoadError(path, "file is empty")
        try:
            check_tflite(data)
        except FlatbufferError as exc:
            raise ModelLoadError(path, str(exc)) from None
        return data

    def resize_batch(self, batch: int) -> bool:
        """Give the input a batch of `batch` (first dimension) and reallocate; True if every output
        followed (one row per input), else the model is put back as it was and False."""
        spec = self.inputs[0]
        if len(self.inputs) != 1 or not spec.shape or spec.shape[0] == batch:
            return len(self.inputs) == 1 and bool(spec.shape) and spec.shape[0] == batch
        before = spec.shape
        try:
            self._interpreter.resize_tensor_input(spec.index, [batch, *spec.shape[1:]])
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            logger.debug("%s: no batch of %d: %s", self.name, batch, exc)
            self._restore(before)
            return False
        outputs = [TensorSpec.from_details(d) for d in self._interpreter.get_output_details()]
        if any(not o.shape or o.shape[0] != batch for o in outputs):
            self._restore(before)
            return False
        self.inputs = [TensorSpec.from_details(d) for d in self._interpreter.get_input_details()]
        self.outputs = outputs
        return True

    def _restore(self, shape: tuple[int, ...]) -> None:
        self._interpreter.resize_tensor_input(self.inputs[0].index, list(shape))
        self._interpreter.allocate_tensors()
        self.inputs = [TensorSpec.from_details(d) for d in self._interpreter.get_input_details()]
        self.outputs = [TensorSpec.from_details(d) for d in self._interpreter.get_output_details()]

    @property
    def name(self) -> str:
        return self.path.stem

    def fill_input(self, fill: Callable[[np.ndarray], T], position: int = 0) -> T:
        """Let `fill` write straight into the input tensor (no copy); returns what it returns.

        The interpreter refuses to invoke while a view of its memory is alive, so the view never
        leaves this call.
        """
        view = self._interpreter.tensor(self.inputs[position].index)()
        try:
            return fill(view)
        finally:
            del view

    def set_input(self, position: int, values: np.ndarray) -> None:
        self._interpreter.set_tensor(self.inputs[position].index, values)

    def invoke(self) -> None:
        if self.fault is not None:
            self.fault()
        self._interpreter.invoke()

    def raw_output(self, position: int) -> np.ndarray:
        return self._interpreter.get_tensor(self.outputs[position].index)

    def output(self, position: int) -> np.ndarray:
        """An output tensor as real values (dequantized float32 copy)."""
        return dequantize(self.raw_output(position), self.outputs[position])

    def describe(self) -> dict[str, Any]:
        """What `edge-runtime info` prints."""
        return {
            "path": str(self.path),
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "runtime": self.runtime.describe(),
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "metadata": self.metadata.to_dict() if self.metadata else None,
        }
