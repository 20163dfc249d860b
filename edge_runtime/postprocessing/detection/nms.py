"""Class-wise greedy non-maximum suppression over [M, 4] (xmin, ymin, xmax, ymax) boxes in numpy."""

from __future__ import annotations

import numpy as np

# Candidates beyond this many (best scores first) are dropped before NMS: the pairwise IoU matrix
# stays small (4 MB) and a frame full of low-grade boxes cannot stall the pipeline.
MAX_CANDIDATES = 1024


def iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one box with each of `boxes`; empty boxes have IoU 0 with everything."""
    return pairwise_iou(box[None], boxes)[0]


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[len(a), len(b)] IoU matrix."""
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.maximum(x1 - x0, 0) * np.maximum(y1 - y0, 0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float,
        limit: int) -> np.ndarray:
    """Indices of the boxes kept, best first, at most `limit`.

    Boxes of different classes never suppress each other: each class is shifted to its own
    region of the plane (the usual offset trick), so one greedy pass serves every class. Each
    step compares the best remaining box with the rest at once, so the Python loop runs once per
    kept box (at most `limit`), not once per candidate.
    """
    if boxes.shape[0] == 0:
        return np.zeros(0, dtype=np.intp)
    order = np.argsort(-scores, kind="stable")[:MAX_CANDIDATES]
    span = float(np.max(boxes[:, 2:]) - min(float(np.min(boxes[:, :2])), 0.0)) + 1.0
    shifted = boxes[order].astype(np.float64) + (classes[order].astype(np.float64) * span)[:, None]
    x0, y0, x1, y1 = shifted.T
    areas = (x1 - x0) * (y1 - y0)
    rest = np.arange(order.size)
    keep: list[int] = []
    while rest.size and len(keep) < limit:
        best, rest = rest[0], rest[1:]
        keep.append(int(order[best]))
        inter = (np.maximum(np.minimum(x1[best], x1[rest]) - np.maximum(x0[best], x0[rest]), 0)
                 * np.maximum(np.minimum(y1[best], y1[rest]) - np.maximum(y0[best], y0[rest]), 0))
        union = areas[best] + areas[rest] - inter
        # keep what overlaps too little; an empty union (two empty boxes) counts as no overlap
        rest = rest[inter <= iou_threshold * union]
    return np.asarray(keep, dtype=np.intp)
