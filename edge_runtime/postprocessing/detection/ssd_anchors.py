"""`anchors`: MediaPipe-style SSD heads (BlazeFace, palm, pose detectors): regressors [1, N, 4+2K]
and scores [1, N, C] (usually C = 1), decoded against anchors generated from the options as
MediaPipe's TensorsToDetectionsCalculator does; K keypoints per box.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from edge_runtime.postprocessing.base import PostprocessError, TaskContext
from edge_runtime.postprocessing.detection.anchors import AnchorSpec, ssd_anchors
from edge_runtime.postprocessing.detection.candidates import Candidates, input_size, sigmoid
from edge_runtime.postprocessing.detection.ssd import shapes

if TYPE_CHECKING:  # options.py imports the decoders (formats.py)
    from edge_runtime.postprocessing.detection.options import DetectionOptions

EXPECTED = "two outputs: regressors [1, N, 4+2K] and scores [1, N, 1]"


def _roles(ctx: TaskContext) -> tuple[int, int]:
    """(regressors position, scores position)."""
    outputs = ctx.outputs
    if len(outputs) != 2 or any(len(s.shape) != 3 or s.shape[0] != 1 for s in outputs) \
            or outputs[0].shape[1] != outputs[1].shape[1]:
        raise PostprocessError(f"anchors expects {EXPECTED}, got {shapes(outputs)}")
    depth = [s.shape[2] for s in outputs]
    fits = [d >= 4 and (d - 4) % 2 == 0 for d in depth]
    if fits[0] != fits[1]:
        return (0, 1) if fits[0] else (1, 0)
    names = [s.name.lower() for s in outputs]
    for hint in ("regress", "box"):
        if (hint in names[0]) != (hint in names[1]):
            return (0, 1) if hint in names[0] else (1, 0)
    for hint in ("score", "classif"):
        if (hint in names[0]) != (hint in names[1]):
            return (1, 0) if hint in names[0] else (0, 1)
    if not fits[0]:
        raise PostprocessError(f"anchors expects {EXPECTED}, got {shapes(outputs)}")
    return 0, 1  # MediaPipe's order


class AnchorsDecoder:
    suppressed = False

    def __init__(self, options: DetectionOptions, ctx: TaskContext) -> None:
        self.regressors, self.scores = _roles(ctx)
        n, depth = ctx.outputs[self.regressors].shape[1:]
        self.num_classes = ctx.outputs[self.scores].shape[2]
        self.num_keypoints = (depth - 4) // 2
        if options.num_keypoints is not None and options.num_keypoints != self.num_keypoints:
            raise PostprocessError(
                f"num_keypoints = {options.num_keypoints} but regressors "
                f"{ctx.outputs[self.regressors].name!r} {list(ctx.outputs[self.regressors].shape)} "
                f"hold {self.num_keypoints} (4 box values + 2 per keypoint)")
        if not options.strides:
            raise PostprocessError("anchors needs the option 'strides' (the feature-map strides "
                                   "the anchors were made for, e.g. [8, 16, 16, 16] for BlazeFace)")
        width, height = input_size(ctx.input_shape)
        if options.input_size:
            width, height = options.input_size
        spec = AnchorSpec(
            strides=tuple(options.strides),
            input_width=int(width),
            input_height=int(height),
            num_layers=options.num_layers or len(options.strides),
            min_scale=_or(options.min_scale, AnchorSpec.min_scale),
            max_scale=_or(options.max_scale, AnchorSpec.max_scale),
            aspect_ratios=tuple(options.aspect_ratios or AnchorSpec.aspect_ratios),
            interpolated_scale_aspect_ratio=_or(options.interpolated_scale_aspect_ratio,
                                                AnchorSpec.interpolated_scale_aspect_ratio),
            reduce_boxes_in_lowest_layer=bool(options.reduce_boxes_in_lowest_layer),
            fixed_anchor_size=bool(options.fixed_anchor_size),
            offset_x=(options.anchor_offset or (0.5, 0.5))[0],
            offset_y=(options.anchor_offset or (0.5, 0.5))[1],
        )
        try:
            self.anchors = ssd_anchors(spec)
        except ValueError as exc:
            raise PostprocessError(str(exc)) from None
        if len(self.anchors) != n:
            raise PostprocessError(
                f"the anchor options give {len(self.anchors)} anchors but the model has {n} "
                f"(regressors {ctx.outputs[self.regressors].name!r} "
                f"{list(ctx.outputs[self.regressors].shape)}); check strides, aspect_ratios, "
                f"interpolated_scale_aspect_ratio, num_layers and input_size")
        self.box_scale = np.asarray(options.box_scale or (width, height, width, height), np.float32)
        self.keypoint_scale = np.asarray(options.keypoint_scale or self.box_scale[:2], np.float32)
        self.xy_first = (options.box_order or "xywh") == "xywh"
        self.exp_box_size = bool(options.exp_box_size)
        self.sigmoid = True if options.sigmoid is None else options.sigmoid
        self.score_clip = _or(options.score_clip, 100.0)

    def describe(self) -> str:
        return (f"{len(self.anchors)} anchors, {self.num_keypoints} keypoints, "
                f"{self.num_classes} class(es)")

    def decode(self, outputs: list[np.ndarray], threshold: float) -> Candidates:
        raw = outputs[self.scores][0]  # [N, C]
        if self.num_classes == 1:
            classes = np.zeros(raw.shape[0], np.int64)
            scores = raw[:, 0]
        else:
            classes = np.argmax(raw, axis=1)
            scores = raw[np.arange(raw.shape[0]), classes]
        if self.sigmoid:  # MediaPipe clips logits first so that exp() cannot overflow
            scores = sigmoid(np.clip(scores, -self.score_clip, self.score_clip))
        index = np.flatnonzero(scores >= threshold)
        if index.size == 0:
            return Candidates.empty(self.num_keypoints)
        regs = outputs[self.regressors][0][index]
        anchors = self.anchors[index]
        ax, ay, aw, ah = (anchors[:, i] for i in range(4))
        x, y, w, h = (regs[:, i] for i in ((0, 1, 2, 3) if self.xy_first else (1, 0, 3, 2)))
        sx, sy, sw, sh = self.box_scale
        cx = x / sx * aw + ax
        cy = y / sy * ah + ay
        if self.exp_box_size:
            w, h = np.exp(w / sw) * aw, np.exp(h / sh) * ah
        else:
            w, h = w / sw * aw, h / sh * ah
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        points = regs[:, 4:].reshape(index.size, self.num_keypoints, 2)
        kx = points[..., 0] / self.keypoint_scale[0] * aw[:, None] + ax[:, None]
        ky = points[..., 1] / self.keypoint_scale[1] * ah[:, None] + ay[:, None]
        return Candidates(boxes.astype(np.float32), scores[index].astype(np.float32),
                          classes[index], np.stack([kx, ky], axis=2).astype(np.float32))


def _or(value: float | None, default: float) -> float:
    return default if value is None else float(value)
