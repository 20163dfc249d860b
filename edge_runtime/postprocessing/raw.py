"""Raw: every output tensor, dequantized, for consumers that decode it themselves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_runtime.postprocessing.base import TaskContext, round_float
from edge_runtime.postprocessing.task import Task
from edge_runtime.preprocessing.geometry import Geometry


@dataclass(frozen=True)
class RawOptions:
    pass


class RawOutputs:
    def __init__(self, options: RawOptions, ctx: TaskContext) -> None:
        self.names = [spec.name for spec in ctx.outputs]

    def entity_labels(self, limit: int) -> tuple[str, ...]:
        return ()

    def __call__(self, outputs: list[np.ndarray], geometry: Geometry | None) -> dict[str, Any]:
        return {
            "outputs": {
                name: {"shape": list(values.shape),
                       "data": [round_float(float(v)) for v in values.reshape(-1)]}
                for name, values in zip(self.names, outputs)
            }
        }


SCHEMA = {
    "type": "object",
    "additionalProperties": {
        "type": "object",
        "required": ["shape", "data"],
        "properties": {
            "shape": {"type": "array", "items": {"type": "integer"}},
            "data": {"type": "array", "items": {"type": "number"}},
        },
    },
}



# No `summary`: raw outputs have no state to compare, so publish.mode = "change" is refused.
# Home Assistant: the default, one sensor with the outputs as attributes.
TASK = Task(RawOptions, RawOutputs, "outputs", SCHEMA)
