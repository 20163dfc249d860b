"""Every task plugin, registered in one place: task name -> its `Task` (task.py).

Adding a task is its module (options, postprocessor, payload field and schema, `change`
summary, Home Assistant entities) plus one loader here. A loader imports its module only when
a pipeline (or the `schema` command) asks for the task (plugin_registry.py): a classifier's
daemon never loads the detection decoders.
"""

from __future__ import annotations

from edge_runtime.plugin_registry import PluginRegistry
from edge_runtime.postprocessing.task import Task


def _classification() -> Task:
    from edge_runtime.postprocessing import classification
    return classification.TASK


def _detection() -> Task:
    from edge_runtime.postprocessing.detection import task as detection
    return detection.TASK


def _raw() -> Task:
    from edge_runtime.postprocessing import raw
    return raw.TASK


def _regression() -> Task:
    from edge_runtime.postprocessing import regression
    return regression.TASK


TASKS: PluginRegistry[Task] = PluginRegistry({
    "classification": _classification,
    "detection": _detection,
    "raw": _raw,
    "regression": _regression,
})
DEFAULT_TASK = "raw"
