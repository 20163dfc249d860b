"""`regression`: a model's output values as named numbers, for models that predict quantities (a
temperature, a remaining useful life, a fill level, an anomaly score) rather than classes.

    [pipelines.postprocess]
    task = "regression"
    names = ["temperature", "humidity"]  # one per output value, in output order

`names` default to the labels when there is one per value, else `value` (one value) or `value0`,
`value1`, ... Every output tensor's values count, in output order. The result carries
`"values": {"temperature": 21.5, "humidity": 40.2}`; a value that is not finite (a broken model)
is `null`, so the result stays valid JSON. Home Assistant gets a sensor per name (the first
`max_labels` when the names are not configured). `publish.mode = "change"` has nothing to compare
(continuous values) and is refused by `check`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_runtime.postprocessing.base import PostprocessError, TaskContext, round_float
from edge_runtime.postprocessing.task import Entity, EntityContext, Task, jinja_string
from edge_runtime.preprocessing.geometry import Geometry


@dataclass(frozen=True)
class RegressionOptions:
    names: tuple[str, ...] = ()  # one per output value; default: the labels, else value0, ...


def default_names(count: int, labels: tuple[str, ...]) -> tuple[str, ...]:
    if len(labels) == count and all(labels) and len(set(labels)) == count:
        return labels
    return ("value",) if count == 1 else tuple(f"value{i}" for i in range(count))


class Regression:
    def __init__(self, options: RegressionOptions, ctx: TaskContext) -> None:
        if not ctx.outputs:
            raise PostprocessError("the model has no outputs")
        count = sum(math.prod(spec.shape) for spec in ctx.outputs)
        shapes = ", ".join(f"{spec.name!r} {list(spec.shape)}" for spec in ctx.outputs)
        self.chosen = bool(options.names)
        self.names = options.names or default_names(count, ctx.labels)
        if len(self.names) != count:
            raise PostprocessError(f"names: {len(self.names)} names for {count} output values "
                                   f"({shapes})")
        repeated = sorted({name for name in self.names if self.names.count(name) > 1})
        if repeated or not all(self.names):
            raise PostprocessError(f"names: each value needs its own non-empty name "
                                   f"({', '.join(map(repr, repeated)) or 'an empty name'})")

    def __call__(self, outputs: list[np.ndarray], geometry: Geometry | None) -> dict[str, Any]:
        values = np.concatenate([output.reshape(-1) for output in outputs]).tolist()
        return {"values": {name: round_float(v) if math.isfinite(v) else None
                           for name, v in zip(self.names, values)}}

    def entity_labels(self, limit: int) -> tuple[str, ...]:
        """A sensor per name: every configured name, else the first `limit`."""
        return self.names if self.chosen else self.names[:limit]


SCHEMA = {
    "type": "object",
    "description": "name -> value, in output order; null when the model gave a non-finite value",
    "additionalProperties": {"type": ["number", "null"]},
}


def entities(ctx: EntityContext) -> list[Entity]:
    """A numeric sensor per name (HA shows a null value as unknown)."""
    return [Entity(("value", name), "sensor", name,
                   "{{ value_json['values'][" + jinja_string(name) + "] }}",
                   options={"state_class": "measurement", "icon": "mdi:chart-line"})
            for name in ctx.labels]


# No `summary`: continuous values have no state for `change` to compare.
TASK = Task(RegressionOptions, Regression, "values", SCHEMA, entities=entities)
