"""How raw input becomes a model input: the settings, from model metadata and/or config."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping

import numpy as np

from edge_runtime.model.tflite_model import TensorSpec

COLORS = ("rgb", "bgr", "gray")
RESIZE_MODES = ("stretch", "letterbox", "center-crop", "letterbox-mediapipe")
LAYOUTS = ("nhwc", "nchw")
INTERPOLATIONS = ("linear", "area", "nearest")


class PreprocessError(ValueError):
    """Preprocessing settings that do not fit the model, or an input that does not fit them."""


def _option(default: Any, help: str, choices: tuple[str, ...] = ()) -> Any:
    """A PreprocessSpec field described once: the converter's CLI options (converters/cli.py),
    the metadata (to_dict) and the daemon's [pipelines.preprocess] keys all come from these."""
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass(frozen=True)
class PreprocessSpec:
    """Image: (pixel - mean) / std per channel after color conversion and resize.

    Sensor windows use mean/std per column the same way. Defaults leave values unchanged.
    Every field is a device setting: stored in the model's metadata by the converter, overridable
    in [pipelines.preprocess], and an `edge-convert --<field>` option.
    """

    color: str = _option("rgb", "channel order the model wants (converter default: rgb, gray "
                         "for a 1-channel input)", COLORS)
    resize: str = _option("stretch", "how a frame of another aspect ratio fits the input "
                          "(default stretch)", RESIZE_MODES)
    mean: tuple[float, ...] = _option((0.0,), "subtracted per channel (or sensor column), "
                                      "e.g. 127.5 or 124,117,104 (default 0)")
    std: tuple[float, ...] = _option((1.0,), "divisor per channel (or sensor column), "
                                     "e.g. 127.5 (default 1)")
    layout: str = _option("nhwc", "input tensor layout (default nhwc)", LAYOUTS)
    # linear: what most training pipelines use, and fast; area: smoother for big downscales.
    interpolation: str = _option("linear", "resampling when resizing: linear (what most training "
                                 "pipelines use, the default), area (smoother for big "
                                 "downscales) or nearest", INTERPOLATIONS)

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
        """Every field, JSON-ready: the model metadata's `preprocess` section."""
        return {f.name: list(value) if isinstance(value := getattr(self, f.name), tuple) else value
                for f in fields(self)}


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
