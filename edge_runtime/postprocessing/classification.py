"""Classification: the top-k scores of a [1, C] output, with labels."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Hashable

import numpy as np

from edge_runtime.config.typed import at_least
from edge_runtime.postprocessing.base import PostprocessError, TaskContext, label_for, round_float
from edge_runtime.postprocessing.task import Entity, EntityContext, Task
from edge_runtime.preprocessing.geometry import Geometry


SMALL_OUTPUT = 32  # classes up to which the top-k is picked in plain Python


@dataclass(frozen=True)
class ClassificationOptions:
    top_k: int = field(default=3, metadata=at_least(1))
    threshold: float = 0.0  # classes scoring below it are left out


class Classifier:
    def __init__(self, options: ClassificationOptions, ctx: TaskContext) -> None:
        if not ctx.outputs:
            raise PostprocessError("the model has no outputs")
        self.classes = math.prod(ctx.outputs[0].shape)
        if ctx.labels and len(ctx.labels) < self.classes:
            raise PostprocessError(
                f"{len(ctx.labels)} labels for {self.classes} classes (output "
                f"{ctx.outputs[0].name!r} has shape {list(ctx.outputs[0].shape)})"
            )
        self.top_k = min(options.top_k, self.classes)
        self.threshold = options.threshold
        self.labels = ctx.labels

    def entity_labels(self, limit: int) -> tuple[str, ...]:
        return ()  # one entity shows the top label, whatever it is

    def __call__(self, outputs: list[np.ndarray], geometry: Geometry | None) -> dict[str, Any]:
        scores = outputs[0].reshape(-1)
        if scores.size <= SMALL_OUTPUT:
            # Plain Python beats numpy's per-call overhead on a handful of classes (sensor models
            # publishing thousands of results/s); sorted() is stable like the argsort below.
            values = scores.tolist()
            top = sorted(range(len(values)), key=values.__getitem__, reverse=True)[:self.top_k]
        else:
            if self.top_k < scores.size:
                top = np.argpartition(scores, -self.top_k)[-self.top_k:]
            else:
                top = np.arange(scores.size)
            top = top[np.argsort(-scores[top], kind="stable")].tolist()
            values = scores
        return {
            "classes": [
                {"index": i, "label": label_for(self.labels, i),
                 "score": round_float(float(values[i]))}
                for i in top
                if values[i] >= self.threshold
            ]
        }


SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["index", "label", "score"],
        "properties": {
            "index": {"type": "integer", "minimum": 0},
            "label": {"type": "string"},
            "score": {"type": "number"},
        },
    },
}


def top_label(classes: list[dict[str, Any]]) -> Hashable:
    """What "the result changed" compares: the top class (None: nothing above the threshold)."""
    return str(classes[0].get("label", classes[0].get("index"))) if classes else None


def top_score(classes: list[dict[str, Any]]) -> float:
    """How sure the result is: the top class's score (0 when none passed the threshold)."""
    return float(classes[0]["score"]) if classes else 0.0


def entities(ctx: EntityContext) -> list[Entity]:
    return [Entity(("label",), "sensor", "label",
                   "{{ value_json.label if value_json.label is not none else 'none' }}",
                   attributes=True, options={"icon": "mdi:label-outline"})]


def state(ts: str, classes: list[dict[str, Any]] | None,
          ctx: EntityContext) -> tuple[Hashable, dict[str, Any]]:
    """`{"ts", "label" (top label or null), "score", "classes"}`; sent at once when the label
    changes."""
    classes = classes or []
    top = classes[0] if classes else None
    payload = {"ts": ts, "label": top["label"] if top else None,
               "score": top["score"] if top else None, "classes": classes}
    return payload["label"], payload


STATE_SCHEMA = {
    "required": ["label", "score", "classes"],
    "properties": {
        "label": {"type": ["string", "null"],
                  "description": "top label, null when no class passed the threshold"},
        "score": {"type": ["number", "null"]},
        "classes": {"type": "array"},
    },
}

TASK = Task(ClassificationOptions, Classifier, "classes", SCHEMA, summary=top_label,
            confidence=top_score, entities=entities, state=state, state_schema=STATE_SCHEMA)
