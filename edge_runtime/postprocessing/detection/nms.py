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


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
                 keypoints: np.ndarray | None, iou_threshold: float,
                 limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Class-wise weighted NMS, as MediaPipe's NonMaxSuppressionCalculator (`WEIGHTED`) does it.

    The best remaining box and every remaining box of its class overlapping it by more than
    `iou_threshold` (itself included) form a cluster; the output is the cluster's score-weighted
    mean box (and keypoints) with the best box's score and class. A detector fires on several
    neighbouring anchors for one object; averaging them gives a steadier box than keeping the best
    one. Returns (index of each cluster's best box, best first, at most `limit`; blended boxes
    [k, 4]; blended keypoints [k, K, 2] or None).
    """
    if boxes.shape[0] == 0:
        empty = np.zeros(0, dtype=np.intp)
        return empty, boxes[:0].copy(), None if keypoints is None else keypoints[:0].copy()
    order = np.argsort(-scores, kind="stable")[:MAX_CANDIDATES]
    span = float(np.max(boxes[:, 2:]) - min(float(np.min(boxes[:, :2])), 0.0)) + 1.0
    shifted = boxes[order].astype(np.float64) + (classes[order].astype(np.float64) * span)[:, None]
    x0, y0, x1, y1 = shifted.T
    areas = (x1 - x0) * (y1 - y0)
    weights = scores[order].astype(np.float64)
    plain = boxes[order].astype(np.float64)
    points = None if keypoints is None else keypoints[order].astype(np.float64)
    rest = np.arange(order.size)
    keep: list[int] = []
    blended: list[np.ndarray] = []
    blended_points: list[np.ndarray] = []
    while rest.size and len(keep) < limit:
        best = rest[0]
        inter = (np.maximum(np.minimum(x1[best], x1[rest]) - np.maximum(x0[best], x0[rest]), 0)
                 * np.maximum(np.minimum(y1[best], y1[rest]) - np.maximum(y0[best], y0[rest]), 0))
        union = areas[best] + areas[rest] - inter
        cluster = inter > iou_threshold * union
        cluster[0] = True  # the best box belongs to its own cluster, even an empty one
        members, w = rest[cluster], weights[rest[cluster]]
        total = float(w.sum())
        keep.append(int(order[best]))
        if total > 0:
            blended.append((plain[members] * w[:, None]).sum(axis=0) / total)
            if points is not None:
                blended_points.append((points[members] * w[:, None, None]).sum(axis=0) / total)
        else:  # zero scores: nothing to weigh by; keep the best box as it is
            blended.append(plain[best])
            if points is not None:
                blended_points.append(points[best])
        rest = rest[~cluster]
    out_boxes = np.asarray(blended, dtype=boxes.dtype).reshape(-1, 4)
    out_points = None
    if keypoints is not None:
        out_points = np.asarray(blended_points, dtype=keypoints.dtype).reshape(
            len(keep), *keypoints.shape[1:])
    return np.asarray(keep, dtype=np.intp), out_boxes, out_points
