"""What a task plugin sees (dequantized outputs) and returns (the task's part of the payload)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from edge_runtime.model.tflite_model import TensorSpec
from edge_runtime.preprocessing.geometry import Geometry


class PostprocessError(ValueError):
    """Task options that do not fit the model's outputs."""


@dataclass(frozen=True)
class TaskContext:
    """What a task needs to know about the model when it is built."""

    outputs: tuple[TensorSpec, ...]
    labels: tuple[str, ...]
    input_shape: tuple[int, ...] = ()


class Postprocessor(Protocol):
    def __call__(self, outputs: list[np.ndarray], geometry: Geometry | None) -> dict[str, Any]:
        """The task's field of the result payload, e.g. {"classes": [...]} (task.Task.field)."""
        ...

    def entity_labels(self, limit: int) -> tuple[str, ...]:
        """Labels that get Home Assistant entities of their own (at most `limit` unless the
        config chose them); () when the task's entities do not go by label."""
        ...


def label_for(labels: tuple[str, ...], index: int) -> str:
    return labels[index] if 0 <= index < len(labels) else str(index)


def round_float(value: float, digits: int = 6) -> float:
    """Short JSON numbers: float32 noise past 6 significant digits means nothing."""
    return float(f"{value:.{digits}g}")
