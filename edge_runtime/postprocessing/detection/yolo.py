"""`yolo`: one output of YOLO-family exports, [1, 4+C, N] (v8 and later: no objectness) or
[1, N, 5+C] (v5/v7: objectness first), rows of cx, cy, w, h, [objectness,] class scores; boxes in
input pixels or normalized.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from edge_runtime.postprocessing.base import PostprocessError, TaskContext
from edge_runtime.postprocessing.detection.candidates import Candidates, input_size, sigmoid
from edge_runtime.postprocessing.detection.ssd import shapes

if TYPE_CHECKING:  # options.py imports the decoders (formats.py)
    from edge_runtime.postprocessing.detection.options import DetectionOptions

EXPECTED = "one output of shape [1, 4+C, N] or [1, N, 5+C]"


def looks_like_yolo(ctx: TaskContext) -> bool:
    return len(ctx.outputs) == 1 and len(ctx.outputs[0].shape) == 3 and ctx.outputs[0].shape[0] == 1


class YoloDecoder:
    suppressed = False
    num_keypoints: int | None = None

    def __init__(self, options: DetectionOptions, ctx: TaskContext) -> None:
        if not looks_like_yolo(ctx) or min(ctx.outputs[0].shape[1:]) < 5:
            raise PostprocessError(f"yolo expects {EXPECTED}, got {shapes(ctx.outputs)}")
        _, a, b = ctx.outputs[0].shape
        # Exports keep N (thousands of grid cells) far larger than the per-box features.
        self.channels_first = a < b
        features = a if self.channels_first else b
        known = len(ctx.labels) - options.label_offset if ctx.labels else None
        if options.objectness is not None:
            self.objectness = options.objectness
        elif self.channels_first:
            self.objectness = False  # [1, 4+C, N] exports (v8 and later) have none
        else:
            # [1, N, 5+C] (v5, v7) usually; [1, N, 4+C] when the label count says so.
            self.objectness = known is None or features - 4 != known
        self.first_class = 5 if self.objectness else 4
        self.num_classes = features - self.first_class
        if self.num_classes < 1:
            raise PostprocessError(
                f"yolo output {ctx.outputs[0].name!r} {list(ctx.outputs[0].shape)} leaves no class "
                f"scores after the box{' and objectness' if self.objectness else ''}; "
                f"expected {EXPECTED}")
        self.normalized = options.normalized
        self.sigmoid = bool(options.sigmoid)
        self.width, self.height = input_size(ctx.input_shape)

    def describe(self) -> str:
        layout = "[1, 4+C, N]" if self.channels_first else "[1, N, 4+C]"
        return (f"{layout}, C={self.num_classes}, objectness={self.objectness}, "
                f"normalized={'auto' if self.normalized is None else self.normalized}")

    def decode(self, outputs: list[np.ndarray], threshold: float) -> Candidates:
        # Work on the tensor as stored: [F, N] (features-major) or [N, F], reducing over the
        # class axis in place; only the rows that pass the threshold are gathered.
        table = outputs[0][0]
        axis = 0 if self.channels_first else 1

        def feature(i: int | slice, rows: np.ndarray | None = None) -> np.ndarray:
            if self.channels_first:
                return table[i] if rows is None else table[i][..., rows]
            return table[:, i] if rows is None else table[rows][:, i]

        if self.objectness:
            objectness = feature(4)
            if self.sigmoid:
                objectness = sigmoid(objectness)
            # score = objectness * class score <= objectness: skip hopeless rows early.
            index = np.flatnonzero(objectness >= threshold)
            class_scores = feature(slice(self.first_class, None), index)
            best = np.max(class_scores, axis=axis)
            if self.sigmoid:
                best = sigmoid(best)  # monotonic: the best class is the same before and after
            scores = best * objectness[index]
        else:
            class_scores = feature(slice(self.first_class, None))
            scores = np.max(class_scores, axis=axis)
            if self.sigmoid:
                scores = sigmoid(scores)
            index = np.arange(scores.size)
        keep = scores >= threshold
        index, scores = index[keep], scores[keep]
        if index.size == 0:
            return Candidates.empty()
        classes = np.argmax(feature(slice(self.first_class, None), index), axis=axis)
        cx, cy, w, h = (feature(i, index) for i in range(4))
        if not self._normalized(feature(slice(0, 2))):
            cx, cy, w, h = cx / self.width, cy / self.height, w / self.width, h / self.height
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        return Candidates(boxes.astype(np.float32), scores.astype(np.float32),
                          classes.astype(np.int64))

    def _normalized(self, centers: np.ndarray) -> bool:
        if self.normalized is not None:
            return self.normalized
        # Pixel exports put grid-cell centers all over the input, whatever the image shows;
        # normalized centers never pass 1 by much.
        return float(np.max(centers)) <= 2.0
