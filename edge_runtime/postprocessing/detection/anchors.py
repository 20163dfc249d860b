"""SSD anchors as MediaPipe's SsdAnchorsCalculator generates them (BlazeFace, BlazePose, palm...).

The model's regressors are offsets against these anchors, so the list must match the one the
model was trained with exactly: same order (layer, row, column, anchor) and the same count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AnchorSpec:
    strides: tuple[int, ...]
    input_width: int
    input_height: int
    num_layers: int
    min_scale: float = 0.1484375
    max_scale: float = 0.75
    aspect_ratios: tuple[float, ...] = (1.0,)
    interpolated_scale_aspect_ratio: float = 1.0
    reduce_boxes_in_lowest_layer: bool = False
    fixed_anchor_size: bool = False
    offset_x: float = 0.5
    offset_y: float = 0.5


def _scale(spec: AnchorSpec, layer: int) -> float:
    if spec.num_layers == 1:
        return (spec.min_scale + spec.max_scale) * 0.5
    return spec.min_scale + (spec.max_scale - spec.min_scale) * layer / (spec.num_layers - 1)


def _cell_shapes(spec: AnchorSpec, first: int, last: int) -> list[tuple[float, float]]:
    """(width, height) of each anchor of one cell, for the layers first..last sharing a stride."""
    ratios: list[float] = []
    scales: list[float] = []
    for layer in range(first, last):
        scale = _scale(spec, layer)
        if layer == 0 and spec.reduce_boxes_in_lowest_layer:
            ratios += [1.0, 2.0, 0.5]
            scales += [0.1, scale, scale]
            continue
        for ratio in spec.aspect_ratios:
            ratios.append(ratio)
            scales.append(scale)
        if spec.interpolated_scale_aspect_ratio > 0:
            following = 1.0 if layer == len(spec.strides) - 1 else _scale(spec, layer + 1)
            scales.append(math.sqrt(scale * following))
            ratios.append(spec.interpolated_scale_aspect_ratio)
    return [(s * math.sqrt(r), s / math.sqrt(r)) for s, r in zip(scales, ratios)]


def ssd_anchors(spec: AnchorSpec) -> np.ndarray:
    """[N, 4] anchors as (x_center, y_center, width, height), normalized to the model input."""
    if spec.num_layers > len(spec.strides):
        raise ValueError(f"num_layers {spec.num_layers} but only {len(spec.strides)} strides")
    blocks: list[np.ndarray] = []
    layer = 0
    while layer < spec.num_layers:
        last = layer
        while last < len(spec.strides) and spec.strides[last] == spec.strides[layer]:
            last += 1
        shapes = np.asarray(_cell_shapes(spec, layer, last), dtype=np.float32)
        if spec.fixed_anchor_size:
            shapes[:] = 1.0
        rows = math.ceil(spec.input_height / spec.strides[layer])
        cols = math.ceil(spec.input_width / spec.strides[layer])
        ys, xs = np.meshgrid((np.arange(rows) + spec.offset_y) / rows,
                             (np.arange(cols) + spec.offset_x) / cols, indexing="ij")
        per_cell = len(shapes)
        block = np.empty((rows, cols, per_cell, 4), dtype=np.float32)
        block[..., 0] = xs[..., None]
        block[..., 1] = ys[..., None]
        block[..., 2:] = shapes
        blocks.append(block.reshape(-1, 4))
        layer = last
    return np.concatenate(blocks) if blocks else np.zeros((0, 4), np.float32)
