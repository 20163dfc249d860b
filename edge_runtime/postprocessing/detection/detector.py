"""The `detection` task: decode (per format), filter by class, NMS, map to the original frame."""

from __future__ import annotations

import logging
from typing import Any, Protocol

import numpy as np

from edge_runtime.postprocessing.base import PostprocessError, TaskContext, label_for, round_float
from edge_runtime.postprocessing.detection.candidates import Candidates, input_size
from edge_runtime.postprocessing.detection.nms import nms, weighted_nms
from edge_runtime.postprocessing.detection.formats import DECODERS
from edge_runtime.postprocessing.detection.options import DetectionOptions
from edge_runtime.postprocessing.detection.ssd import looks_like_ssd, shapes
from edge_runtime.postprocessing.detection.yolo import looks_like_yolo
from edge_runtime.preprocessing.geometry import Geometry

logger = logging.getLogger(__name__)
DEFAULT_IOU = 0.45
WEIGHTED_BY_DEFAULT = {"anchors": "weighted"}  # MediaPipe blends its detectors' boxes


class Decoder(Protocol):
    suppressed: bool  # the model ran NMS itself
    num_classes: int | None  # None: unknown until run time
    num_keypoints: int | None

    def decode(self, outputs: list[np.ndarray], threshold: float) -> Candidates: ...

    def describe(self) -> str: ...


def guess_format(ctx: TaskContext) -> str:
    """ssd-postprocess and yolo are recognizable by their outputs; anchors need options anyway."""
    if looks_like_ssd(ctx.outputs):
        return "ssd-postprocess"
    if looks_like_yolo(ctx):
        return "yolo"
    raise PostprocessError(
        f"cannot tell the detection format from the outputs ({shapes(ctx.outputs)}); "
        f"set format to one of: {', '.join(DECODERS)}")


def to_frame(geometry: Geometry | None, xs: np.ndarray,
             ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Geometry.to_frame over arrays: normalized input coordinates -> normalized frame, clipped."""
    if geometry is not None:
        g = geometry
        xs = (xs * (g.input_width * g.scale_x) + g.shift_x) / g.frame_width
        ys = (ys * (g.input_height * g.scale_y) + g.shift_y) / g.frame_height
    return np.clip(xs, 0.0, 1.0), np.clip(ys, 0.0, 1.0)


class Detector:
    def __init__(self, options: DetectionOptions, ctx: TaskContext) -> None:
        fmt = options.format if options.format != "auto" else guess_format(ctx)
        misplaced = options.misplaced(fmt)
        if misplaced:
            raise PostprocessError(
                f"option '{misplaced[0]}' is for format {options.owner(misplaced[0])}, "
                f"not {fmt}")
        self.format = fmt
        self.decoder: Decoder = DECODERS[fmt](options, ctx)
        self.labels = ctx.labels
        self.offset = options.label_offset
        classes = self.decoder.num_classes
        if ctx.labels and classes is not None and len(ctx.labels) - self.offset < classes:
            raise PostprocessError(
                f"{len(ctx.labels)} labels (label_offset {self.offset}) for {classes} classes "
                f"of the {fmt} outputs ({shapes(ctx.outputs)})")
        self.allowed = self._allowed(options.classes)
        self.threshold = options.threshold
        self.max_detections = options.max_detections
        self.iou_threshold = options.iou_threshold
        if self.iou_threshold is None and not self.decoder.suppressed:
            self.iou_threshold = DEFAULT_IOU
        self.nms = options.nms or WEIGHTED_BY_DEFAULT.get(fmt, "greedy")
        # NMS in input pixels: normalized units would stretch IoU on a non-square input.
        width, height = input_size(ctx.input_shape)
        self.pixels = np.asarray([width, height, width, height], np.float32)
        logger.info("detection: format %s (%s), %s NMS", fmt, self.decoder.describe(), self.nms)

    def reported_labels(self) -> tuple[str, ...]:
        """The labels results can carry: the allow-list's, else every labeled class."""
        if self.allowed is None:
            return tuple(self.labels[self.offset:])
        return tuple(label_for(self.labels, int(i)) for i in self.allowed)  # label indices

    def entity_labels(self, limit: int) -> tuple[str, ...]:
        """Labels Home Assistant gets entities for: the allow-list's, else the first `limit`."""
        reported = self.reported_labels()
        return reported if self.allowed is not None else reported[:limit]

    def _allowed(self, names: tuple[str, ...]) -> np.ndarray | None:
        """Label indices allowed by the `classes` option (None = every class)."""
        if not names:
            return None
        indices = set()
        for name in names:
            matches = [i for i, label in enumerate(self.labels) if label == name]
            if matches:
                indices.update(matches)
            elif name.isdigit() and int(name) >= len(self.labels):
                indices.add(int(name))  # unlabeled classes are reported by number
            else:
                known = ", ".join(self.labels[:20]) + (", ..." if len(self.labels) > 20 else "")
                raise PostprocessError(f"classes: unknown label {name!r} "
                                       f"(model labels: {known or 'none; use class numbers'})")
        return np.asarray(sorted(indices), dtype=np.int64)

    def __call__(self, outputs: list[np.ndarray], geometry: Geometry | None) -> dict[str, Any]:
        found = self.decoder.decode(outputs, self.threshold)
        if found.scores.size:
            # A broken model's NaN boxes or negative class ids would break the payload contract.
            valid = np.isfinite(found.boxes).all(axis=1) & (found.classes + self.offset >= 0)
            if self.allowed is not None:
                valid &= np.isin(found.classes + self.offset, self.allowed)
            found = found.take(valid)
        if self.iou_threshold is not None and self.nms == "weighted":
            keep, boxes, points = weighted_nms(found.boxes * self.pixels, found.scores,
                                               found.classes, found.keypoints,
                                               self.iou_threshold, self.max_detections)
            found = Candidates(boxes / self.pixels, found.scores[keep], found.classes[keep],
                               points)
            keep = np.arange(keep.size)
        elif self.iou_threshold is not None:
            keep = nms(found.boxes * self.pixels, found.scores, found.classes, self.iou_threshold,
                       self.max_detections)
        else:
            keep = np.argsort(-found.scores, kind="stable")[: self.max_detections]
        found = found.take(keep)
        x0, y0 = to_frame(geometry, found.boxes[:, 0], found.boxes[:, 1])
        x1, y1 = to_frame(geometry, found.boxes[:, 2], found.boxes[:, 3])
        if found.keypoints is not None:
            kx, ky = to_frame(geometry, found.keypoints[..., 0], found.keypoints[..., 1])
        detections = []
        for i in range(found.scores.size):
            index = int(found.classes[i]) + self.offset
            detection: dict[str, Any] = {
                "index": index,
                "label": label_for(self.labels, index),
                "score": round_float(float(found.scores[i])),
                "box": {"xmin": round_float(float(x0[i])), "ymin": round_float(float(y0[i])),
                        "xmax": round_float(float(x1[i])), "ymax": round_float(float(y1[i]))},
            }
            if found.keypoints is not None:
                detection["keypoints"] = [{"x": round_float(float(x)), "y": round_float(float(y))}
                                          for x, y in zip(kx[i], ky[i])]
            detections.append(detection)
        return {"detections": detections}
