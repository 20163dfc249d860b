"""Crop geometry for cascade stages: a detection box -> the image a stage's model sees.

Pure functions over a frame and a normalized box. The region is computed in frame pixels:
optionally grown to a square around the box center, then grown by `margin` on each side, then
either clipped to the frame (`edge = "clip"`) or kept whole with the outside filled with black
(`edge = "pad"`). `to_frame_geometry` composes the stage preprocessing's Geometry (model input ->
crop) with the crop's offset, so a stage's coordinates (a detector or landmark stage) come out in
the original frame, like the pipeline's own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_runtime.config.cascade import CropConfig
from edge_runtime.preprocessing.geometry import Geometry


@dataclass(frozen=True)
class Region:
    """A crop in frame pixels, [x0, x1) x [y0, y1); may reach outside the frame before clipping."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


def crop_region(box: dict[str, Any], width: int, height: int, crop: CropConfig) -> Region | None:
    """The region to cut for a normalized box {xmin, ymin, xmax, ymax}; None if it is too small
    or lies outside the frame."""
    x0, x1 = box["xmin"] * width, box["xmax"] * width
    y0, y1 = box["ymin"] * height, box["ymax"] * height
    w, h = x1 - x0, y1 - y0
    if w < crop.min_size or h < crop.min_size:
        return None
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if crop.square:
        w = h = max(w, h)
    w, h = w * (1 + 2 * crop.margin), h * (1 + 2 * crop.margin)
    region = Region(int(np.floor(cx - w / 2)), int(np.floor(cy - h / 2)),
                    int(np.ceil(cx + w / 2)), int(np.ceil(cy + h / 2)))
    if crop.edge == "clip":
        region = Region(max(region.x0, 0), max(region.y0, 0), min(region.x1, width),
                        min(region.y1, height))
    if region.x1 <= max(region.x0, 0) or region.y1 <= max(region.y0, 0) \
            or region.x0 >= width or region.y0 >= height:
        return None
    return region


def cut(frame: np.ndarray, region: Region) -> np.ndarray:
    """The pixels of `region`: a view when it lies inside the frame, else a black-padded copy."""
    height, width = frame.shape[:2]
    if region.x0 >= 0 and region.y0 >= 0 and region.x1 <= width and region.y1 <= height:
        return frame[region.y0:region.y1, region.x0:region.x1]
    out = np.zeros((region.height, region.width) + frame.shape[2:], frame.dtype)
    sx0, sy0 = max(region.x0, 0), max(region.y0, 0)
    sx1, sy1 = min(region.x1, width), min(region.y1, height)
    out[sy0 - region.y0:sy1 - region.y0, sx0 - region.x0:sx1 - region.x0] = \
        frame[sy0:sy1, sx0:sx1]
    return out


def to_frame_geometry(inner: Geometry, region: Region, width: int, height: int) -> Geometry:
    """Model input -> original frame: the stage's own mapping into the crop, then the offset."""
    return dataclasses.replace(inner, frame_width=width, frame_height=height,
                               shift_x=inner.shift_x + region.x0,
                               shift_y=inner.shift_y + region.y0)
