"""Class-wise greedy non-maximum suppression over [M, 4] (xmin, ymin, xmax, ymax) boxes in numpy."""

from __future__ import annotations

import numpy as np


def iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one box with each of `boxes`; empty boxes have IoU 0 with everything."""
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float,
        limit: int) -> np.ndarray:
    """Indices of the boxes kept, best first, at most `limit`.

    Boxes of different classes never suppress each other: each class is shifted to its own
    region of the plane (the usual offset trick), so one greedy pass serves every class.
    """
    if boxes.shape[0] == 0:
        return np.zeros(0, dtype=np.intp)
    span = float(np.max(boxes[:, 2:]) - min(float(np.min(boxes[:, :2])), 0.0)) + 1.0
    shifted = boxes + (classes.astype(np.float64) * span)[:, None]
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size and len(keep) < limit:
        best = order[0]
        keep.append(int(best))
        rest = order[1:]
        order = rest[iou_one_to_many(shifted[best], shifted[rest]) <= iou_threshold]
    return np.asarray(keep, dtype=np.intp)
