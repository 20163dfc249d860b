"""What every detection decoder hands over, and the model-input size they decode against."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_runtime.postprocessing.base import PostprocessError


@dataclass(frozen=True)
class Candidates:
    """Detections above the score threshold, before class filter, NMS and mapping to the frame.

    Coordinates are normalized (0-1) to the model input, x before y.
    """

    boxes: np.ndarray  # [M, 4] float: xmin, ymin, xmax, ymax
    scores: np.ndarray  # [M] float
    classes: np.ndarray  # [M] int: class id as the model numbers it
    keypoints: np.ndarray | None = None  # [M, K, 2] float: x, y

    def take(self, index: np.ndarray) -> Candidates:
        return Candidates(self.boxes[index], self.scores[index], self.classes[index],
                          None if self.keypoints is None else self.keypoints[index])

    @classmethod
    def empty(cls, keypoints: int | None = None) -> Candidates:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64),
                   None if keypoints is None else np.zeros((0, keypoints, 2), np.float32))


def input_size(shape: tuple[int, ...]) -> tuple[int, int]:
    """(width, height) of an image input tensor, NHWC ([1, H, W, C], [1, H, W]) or NCHW."""
    if len(shape) == 3:
        return shape[2], shape[1]
    if len(shape) == 4:
        if shape[3] <= 4 or shape[1] > 4:
            return shape[2], shape[1]
        return shape[3], shape[2]
    raise PostprocessError(
        f"detection needs an image input ([1, H, W, C]), the model's input has shape {list(shape)}"
    )


def sigmoid(values: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # exp(100) overflows float32 to inf: the sigmoid is then 0
        return 1.0 / (1.0 + np.exp(-values))
