"""`ssd-postprocess`: models ending in TFLite_Detection_PostProcess (TF Object Detection API,
EfficientDet-Lite, Coral): boxes [1, N, 4] (ymin, xmin, ymax, xmax, normalized), classes [1, N],
scores [1, N], count [1]; already suppressed and sorted by the op.

The order of the four outputs differs between TF versions and export paths, so the tensors are
identified by shape (boxes, count), then by name, then by the op's output numbering in the
tensor names, then by position (the rule pycoral uses). `output_order` settles it explicitly.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np

from edge_runtime.model.tflite_model import TensorSpec
from edge_runtime.postprocessing.base import PostprocessError, TaskContext
from edge_runtime.postprocessing.detection.candidates import Candidates

if TYPE_CHECKING:  # options.py imports the decoders (formats.py)
    from edge_runtime.postprocessing.detection.options import DetectionOptions

ROLES = ("boxes", "classes", "scores", "count")
EXPECTED = "four outputs: boxes [1, N, 4], classes [1, N], scores [1, N] and count [1]"


def shapes(outputs: tuple[TensorSpec, ...]) -> str:
    return ", ".join(f"{spec.name!r} {list(spec.shape)}" for spec in outputs) or "no outputs"


def looks_like_ssd(outputs: tuple[TensorSpec, ...]) -> bool:
    try:
        _by_shape(outputs)
        return True
    except PostprocessError:
        return False


def _by_shape(outputs: tuple[TensorSpec, ...]) -> tuple[int, int, list[int]]:
    """(boxes position, count position, the two [1, N] positions) or PostprocessError."""
    if len(outputs) != 4:
        raise PostprocessError(f"ssd-postprocess expects {EXPECTED}, got {shapes(outputs)}")
    boxes = [i for i, s in enumerate(outputs) if len(s.shape) == 3 and s.shape[2] == 4]
    count = [i for i, s in enumerate(outputs) if len(s.shape) == 1 and s.shape[0] == 1]
    if len(boxes) != 1 or len(count) != 1:
        raise PostprocessError(f"ssd-postprocess expects {EXPECTED}, got {shapes(outputs)}")
    n = outputs[boxes[0]].shape[1]
    rest = [i for i in range(4) if i not in (boxes[0], count[0])]
    if any(outputs[i].shape != (1, n) for i in rest):
        raise PostprocessError(f"ssd-postprocess expects {EXPECTED} with the same N, "
                               f"got {shapes(outputs)}")
    return boxes[0], count[0], rest


def _suffix(name: str) -> int | None:
    match = re.search(r":(\d+)$", name)
    return int(match.group(1)) if match else 0 if ":" not in name else None


def assign_roles(outputs: tuple[TensorSpec, ...], order: tuple[str, ...] | None) -> dict[str, int]:
    """Output position of each role."""
    if order is not None:
        if sorted(order) != sorted(ROLES):
            raise PostprocessError(
                f"output_order must name each of {', '.join(ROLES)} once, got {list(order)}")
        roles = {role: i for i, role in enumerate(order)}
        _by_shape(outputs)  # the shapes must still fit
        if len(outputs[roles["boxes"]].shape) != 3 or len(outputs[roles["count"]].shape) != 1:
            raise PostprocessError(f"output_order {list(order)} does not fit the outputs "
                                   f"{shapes(outputs)}")
        return roles
    boxes, count, (a, b) = _by_shape(outputs)
    roles = {"boxes": boxes, "count": count}
    names = [outputs[a].name.lower(), outputs[b].name.lower()]
    if ("score" in names[0]) != ("score" in names[1]):
        scores_first = "score" in names[0]
    elif ("class" in names[0]) != ("class" in names[1]):
        scores_first = "class" in names[1]
    else:
        numbers = [_suffix(outputs[i].name) for i in (boxes, a, b, count)]
        bases = {re.sub(r":\d+$", "", outputs[i].name) for i in (boxes, a, b, count)}
        if len(bases) == 1 and sorted(n for n in numbers if n is not None) == [0, 1, 2, 3]:
            if numbers[0] == 0 and numbers[3] == 3:  # the op's own output order
                scores_first = numbers[1] == 2
            elif numbers[0] == 3 and numbers[3] == 0:
                scores_first = numbers[1] == 1  # TF2 signature: count, scores, classes, boxes
            else:
                scores_first = count != 3
        else:
            # pycoral: count last means (boxes, classes, scores, count), else scores come first.
            scores_first = count != 3
    roles["scores"], roles["classes"] = (a, b) if scores_first else (b, a)
    return roles


class SsdPostprocessDecoder:
    suppressed = True  # TFLite_Detection_PostProcess ran NMS in the graph
    num_classes: int | None = None
    num_keypoints: int | None = None

    def __init__(self, options: DetectionOptions, ctx: TaskContext) -> None:
        self.roles = assign_roles(ctx.outputs, options.output_order)
        self.capacity = ctx.outputs[self.roles["boxes"]].shape[1]

    def describe(self) -> str:
        return ", ".join(f"{role}=output {i}" for role, i in self.roles.items())

    def decode(self, outputs: list[np.ndarray], threshold: float) -> Candidates:
        count = int(min(max(outputs[self.roles["count"]].reshape(-1)[0], 0), self.capacity))
        scores = outputs[self.roles["scores"]].reshape(-1)[:count]
        keep = np.flatnonzero(scores >= threshold)
        yxyx = outputs[self.roles["boxes"]].reshape(-1, 4)[keep]
        classes = np.rint(outputs[self.roles["classes"]].reshape(-1)[keep]).astype(np.int64)
        return Candidates(yxyx[:, [1, 0, 3, 2]], scores[keep], classes)
