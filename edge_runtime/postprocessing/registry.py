"""Every task plugin, registered in one place: task name -> (options dataclass, builder)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from edge_runtime.postprocessing.base import Postprocessor, TaskContext
from edge_runtime.postprocessing.classification import ClassificationOptions, Classifier
from edge_runtime.postprocessing.detection import DetectionOptions, Detector
from edge_runtime.postprocessing.raw import RawOptions, RawOutputs


@dataclass(frozen=True)
class TaskPlugin:
    options: type
    create: Callable[[Any, TaskContext], Postprocessor]


TASKS: dict[str, TaskPlugin] = {
    "classification": TaskPlugin(ClassificationOptions, Classifier),
    "detection": TaskPlugin(DetectionOptions, Detector),
    "raw": TaskPlugin(RawOptions, RawOutputs),
}
DEFAULT_TASK = "raw"
