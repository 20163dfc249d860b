"""Detection options, as `[pipelines.postprocess]` (layered over the model metadata) spells them.

One flat table so that metadata and config layer key by key. Format-specific keys default to None
("not set"): a key meant for another format is an error rather than silently ignored, and each
decoder fills in its own defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

from edge_runtime.config.typed import at_least
from edge_runtime.postprocessing.detection.formats import DECODERS


def one_of(names: tuple[str, ...]) -> dict[str, Any]:
    """Field metadata: the value is one of `names`."""
    def check(value: Any) -> str | None:
        if value in names:
            return None
        return f"must be one of {', '.join(map(repr, names))}, got {value!r}"
    return {"check": check}


def between(low: float, high: float) -> dict[str, Any]:
    """Field metadata: low <= value <= high (None passes: the key is unset)."""
    def check(value: Any) -> str | None:
        if value is None or low <= value <= high:
            return None
        return f"must be between {low} and {high}, got {value!r}"
    return {"check": check}


def positive_items() -> dict[str, Any]:
    def check(value: Any) -> str | None:
        if value is None or all(v > 0 for v in value):
            return None
        return f"every value must be > 0, got {list(value)!r}"
    return {"check": check}


def count_of(n: int) -> dict[str, Any]:
    def check(value: Any) -> str | None:
        if value is None or len(value) == n:
            return None
        return f"needs {n} values, got {len(value)}"
    return {"check": check}


def _for(fmt: str, **metadata: Any) -> dict[str, Any]:
    return {"format": fmt, **metadata}


@dataclass(frozen=True)
class DetectionOptions:
    # "auto" (guess from the outputs) or one of formats.DECODERS
    format: str = field(default="auto", metadata=one_of(("auto", *DECODERS)))
    threshold: float = field(default=0.5, metadata=between(0.0, 1.0))
    max_detections: int = field(default=25, metadata=at_least(1))
    # Class-wise NMS IoU; default 0.45 for yolo/anchors. ssd-postprocess models did NMS in the
    # graph already, so there it runs only when set.
    iou_threshold: float | None = field(default=None, metadata=between(0.0, 1.0))
    # greedy: keep the best of overlapping boxes; weighted: their score-weighted mean (MediaPipe's
    # WEIGHTED suppression, steadier boxes). Default: weighted for anchors, greedy otherwise.
    nms: Literal["greedy", "weighted"] | None = None
    classes: tuple[str, ...] = ()  # allow-list of labels; empty = all
    label_offset: int = 0  # label = labels[class id + label_offset] (e.g. 1 for a "???" row 0)

    # ssd-postprocess: the role of each output tensor, in output order, when names and shapes
    # leave classes vs scores ambiguous: e.g. ["scores", "boxes", "count", "classes"].
    output_order: tuple[str, ...] | None = field(default=None, metadata=_for("ssd-postprocess"))

    # yolo: box coordinates normalized (0-1) or in input pixels; None = detect from the values.
    normalized: bool | None = field(default=None, metadata=_for("yolo"))
    # yolo: rows carry an objectness score before the class scores; None = from the layout.
    objectness: bool | None = field(default=None, metadata=_for("yolo"))
    # yolo/anchors: scores are logits (apply a sigmoid); default false for yolo, true for anchors.
    sigmoid: bool | None = field(default=None, metadata=_for("yolo anchors"))

    # anchors (MediaPipe SsdAnchorsCalculator / TensorsToDetectionsCalculator option names).
    strides: tuple[int, ...] | None = field(
        default=None, metadata=_for("anchors", **positive_items()))
    num_layers: int | None = field(default=None, metadata=_for("anchors", **at_least(1)))
    input_size: tuple[int, ...] | None = field(  # [width, height]; default: the model input
        default=None, metadata=_for("anchors", **count_of(2)))
    min_scale: float | None = field(default=None, metadata=_for("anchors"))
    max_scale: float | None = field(default=None, metadata=_for("anchors"))
    aspect_ratios: tuple[float, ...] | None = field(
        default=None, metadata=_for("anchors", **positive_items()))
    interpolated_scale_aspect_ratio: float | None = field(default=None, metadata=_for("anchors"))
    reduce_boxes_in_lowest_layer: bool | None = field(default=None, metadata=_for("anchors"))
    fixed_anchor_size: bool | None = field(default=None, metadata=_for("anchors"))
    anchor_offset: tuple[float, ...] | None = field(  # [x, y] within a cell
        default=None, metadata=_for("anchors", **count_of(2)))
    box_scale: tuple[float, ...] | None = field(  # [x, y, w, h]; default input w, h, w, h
        default=None, metadata=_for("anchors", **count_of(4)))
    keypoint_scale: tuple[float, ...] | None = field(  # [x, y]; default box_scale x, y
        default=None, metadata=_for("anchors", **count_of(2)))
    box_order: Literal["xywh", "yxhw"] | None = field(default=None, metadata=_for("anchors"))
    exp_box_size: bool | None = field(default=None, metadata=_for("anchors"))
    num_keypoints: int | None = field(default=None, metadata=_for("anchors", **at_least(0)))
    score_clip: float | None = field(default=None, metadata=_for("anchors"))

    def misplaced(self, fmt: str) -> list[str]:
        """Keys that were set but belong to other formats."""
        return [
            f.name for f in fields(self)
            if "format" in f.metadata and getattr(self, f.name) is not None
            and fmt not in f.metadata["format"].split()
        ]

    def owner(self, name: str) -> str:
        for f in fields(self):
            if f.name == name:
                return " or ".join(f.metadata["format"].split())
        raise KeyError(name)
