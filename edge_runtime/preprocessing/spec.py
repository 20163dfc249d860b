"""How raw input becomes a model input: the settings, from model metadata and/or config."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Mapping

import numpy as np

from edge_runtime.model.tflite_model import TensorSpec

COLORS = ("rgb", "bgr", "gray")
RESIZE_MODES = ("stretch", "letterbox", "center-crop", "letterbox-mediapipe")
LAYOUTS = ("nhwc", "nchw")
INTERPOLATIONS = ("linear", "area", "nearest")


class PreprocessError(ValueError):
    """Preprocessing settings that do not fit the model, or an input that does not fit them."""


@dataclass(frozen=True)
class PreprocessSpec:
    """Image: (pixel - mean) / std per channel after color conversion and resize.

    Sensor windows use mean/std per column the same way. Defaults leave values unchanged.
    """

    color: str = "rgb"
    resize: str = "stretch"
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    layout: str = "nhwc"
    # linear: what most training pipelines use, and fast; area: smoother for big downscales.
    interpolation: str = "linear"

    def __post_init__(self) -> None:
        if self.color not in COLORS:
            raise PreprocessError(f"color must be one of {', '.join(COLORS)}, not {self.color!r}")
        if self.resize not in RESIZE_MODES:
            raise PreprocessError(
                f"resize must be one of {', '.join(RESIZE_MODES)}, not {self.resize!r}"
            )
        if self.layout not in LAYOUTS:
            raise PreprocessError(f"layout must be one of {', '.join(LAYOUTS)}, not {self.layout!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise PreprocessError(
                f"interpolation must be one of {', '.join(INTERPOLATIONS)}, not {self.interpolation!r}"
            )
        if not self.mean or not self.std:
            raise PreprocessError("mean and std need at least one value")
        if any(s == 0 for s in self.std):
            raise PreprocessError("std values must not be 0")

    def updated(self, settings: Mapping[str, Any]) -> PreprocessSpec:
        """A copy with the given keys replaced (unknown keys ignored; mean/std as lists or numbers)."""
        known = {f.name for f in fields(self)}
        changes: dict[str, Any] = {}
        for key, value in settings.items():
            if key not in known or value is None:
                continue
            if key in ("mean", "std"):
                value = tuple(float(v) for v in (value if isinstance(value, (list, tuple)) else [value]))
            changes[key] = value
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "color": self.color,
            "resize": self.resize,
            "mean": list(self.mean),
            "std": list(self.std),
            "layout": self.layout,
            "interpolation": self.interpolation,
        }


def per_channel(values: tuple[float, ...], channels: int, what: str) -> np.ndarray:
    if len(values) == 1:
        return np.full(channels, values[0], dtype=np.float32)
    if len(values) != channels:
        raise PreprocessError(
            f"{what} has {len(values)} values but the model input has {channels} channels"
        )
    return np.asarray(values, dtype=np.float32)


def affine_to_input(
    spec: PreprocessSpec, tensor: TensorSpec, channels: int
) -> tuple[np.ndarray, np.ndarray]:
    """(gain, offset) so that input_value = raw * gain + offset, quantization included."""
    mean = per_channel(spec.mean, channels, "mean")
    std = per_channel(spec.std, channels, "std")
    gain = 1.0 / std
    offset = -mean / std
    if tensor.quantized:
        gain = gain / tensor.scale
        offset = offset / tensor.scale + tensor.zero_point
    return gain.astype(np.float32), offset.astype(np.float32)


def store(values: np.ndarray, out: np.ndarray) -> None:
    """Write float values into an input tensor of any dtype (round and saturate for integers)."""
    if np.issubdtype(out.dtype, np.integer):
        info = np.iinfo(out.dtype)
        np.rint(values, out=values)
        np.clip(values, info.min, info.max, out=values)
    np.copyto(out, values.reshape(out.shape), casting="unsafe")
