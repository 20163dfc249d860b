"""Sensor windows (rows x columns of float32) into a sensor model's input tensor."""

from __future__ import annotations

import math

import numpy as np

from edge_runtime.model.tflite_model import TensorSpec
from edge_runtime.preprocessing.spec import PreprocessError, PreprocessSpec, affine_to_input, store


class SensorPreprocessor:
    """A window of `window` rows by `columns` values; the tensor may be [1, N, C], [1, N*C], ..."""

    def __init__(self, spec: PreprocessSpec, tensor: TensorSpec, window: int, columns: int) -> None:
        self.tensor = tensor
        self.window = window
        self.columns = columns
        if math.prod(tensor.shape) != window * columns:
            raise PreprocessError(
                f"a window of {window} rows x {columns} columns has {window * columns} values but "
                f"input tensor {tensor.name!r} (shape {list(tensor.shape)}) takes "
                f"{math.prod(tensor.shape)}"
            )
        self._gain, self._offset = affine_to_input(spec, tensor, columns)
        self._values = np.zeros((window, columns), np.float32)

    def __call__(self, window: np.ndarray, out: np.ndarray) -> None:
        if window.shape != (self.window, self.columns):
            raise PreprocessError(
                f"expected a window of shape {[self.window, self.columns]}, got {list(window.shape)}"
            )
        # A finite sum proves every value finite (NaN and inf propagate) at a fraction of the
        # cost of isfinite(); in float64 a float32 window's sum cannot overflow.
        if not math.isfinite(window.sum(dtype=np.float64)) and not np.isfinite(window).all():
            raise PreprocessError("window holds NaN or infinite values")
        np.multiply(window, self._gain, out=self._values)
        np.add(self._values, self._offset, out=self._values)
        store(self._values, out)
