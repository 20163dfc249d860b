"""The quantization modes edge-convert offers and how each one configures TFLiteConverter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np


@dataclass(frozen=True)
class QuantMode:
    name: str
    description: str
    needs_calibration: bool
    # Types the model's input/output tensors may have; the first one is the default.
    io_types: tuple[str, ...]

    @property
    def default_io_type(self) -> str:
        return self.io_types[0]


MODES: dict[str, QuantMode] = {
    m.name: m
    for m in (
        QuantMode("none", "float32, no quantization", False, ("float32",)),
        QuantMode("float16", "float16 weights, float32 compute", False, ("float32",)),
        QuantMode("dynamic", "int8 weights, float activations (dynamic range)", False,
                  ("float32",)),
        # int8 I/O by default: the device's preprocessing writes quantized values straight into the
        # input tensor, so float I/O would only add QUANTIZE/DEQUANTIZE ops.
        QuantMode("int8", "full integer int8 (needs calibration data)", True,
                  ("int8", "uint8", "float32")),
        QuantMode("int16x8", "int16 activations, int8 weights (needs calibration data)", True,
                  ("float32", "int16")),
    )
}
MODE_NAMES = tuple(MODES)
# Modes whose pruned weights are stored sparse (tf.lite.Optimize.EXPERIMENTAL_SPARSITY: DENSIFY
# ops): the file itself shrinks and XNNPACK may run the model with its sparse kernels. Quantized
# weights stored sparse do not load on ai-edge-litert 2.3 (XNNPACK "failed to delegate" the
# dynamic and int8 models; int16x8's CONV_2D refuses its bias), so those stay dense.
SPARSE_WEIGHT_MODES = ("none", "float16")


def resolve_io_type(mode: str, io_type: str | None) -> str:
    """The I/O type for `mode`: the one asked for if the mode supports it, else its default."""
    spec = MODES[mode]
    if io_type is None:
        return spec.default_io_type
    if io_type not in spec.io_types:
        raise ValueError(
            f"--io-type {io_type} does not apply to --quantize {mode} "
            f"(choose one of: {', '.join(spec.io_types)})"
        )
    return io_type


def configure(
    converter: Any,
    mode: str,
    io_type: str,
    representative: Callable[[], Iterable[list[np.ndarray]]] | None,
    sparse_weights: bool = False,
) -> None:
    """Set a tf.lite.TFLiteConverter up for `mode` (TensorFlow is imported by the caller).

    `sparse_weights` (pruned models): in SPARSE_WEIGHT_MODES, weights that are mostly zeros are
    stored in TFLite's sparse format, expanded by DENSIFY ops when the model is loaded."""
    import tensorflow as tf

    spec = MODES[mode]
    if spec.needs_calibration and representative is None:
        raise ValueError(f"--quantize {mode} needs calibration data")
    if sparse_weights and mode in SPARSE_WEIGHT_MODES:
        converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    if mode == "none":
        return
    converter.optimizations = [*converter.optimizations, tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic":
        # TensorFlow >= 2.17's new dynamic-range quantizer writes FULLY_CONNECTED version 12,
        # which tflite-runtime 2.14 (still the newest wheel for many boards) refuses to load.
        # The previous quantizer writes an op version every runtime we target accepts.
        converter.experimental_new_dynamic_range_quantizer = False
    elif mode == "int8":
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = _tf_type(io_type)
        converter.inference_output_type = _tf_type(io_type)
    elif mode == "int16x8":
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
        converter.inference_input_type = _tf_type(io_type)
        converter.inference_output_type = _tf_type(io_type)
    else:  # pragma: no cover - MODES and this function are kept in step
        raise ValueError(f"unknown mode {mode!r}")


def _tf_type(io_type: str) -> Any:
    import tensorflow as tf

    return {"float32": tf.float32, "int8": tf.int8, "uint8": tf.uint8, "int16": tf.int16}[io_type]
