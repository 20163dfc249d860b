"""Every task plugin, registered in one place: task name -> its `Task` (task.py).

Adding a task is its module (options, postprocessor, payload field and schema, `change`
summary, Home Assistant entities) plus one line here naming its module. The module is imported
only when a pipeline (or the `schema` command) asks for the task (plugin_registry.py): a
classifier's daemon never loads the detection decoders.
"""

from __future__ import annotations

from importlib import import_module
from typing import Callable

from edge_runtime.plugin_registry import PluginRegistry
from edge_runtime.postprocessing.task import Task


def _task(module: str) -> Callable[[], Task]:
    """The loader of the task in `edge_runtime.postprocessing.<module>` (its `TASK`)."""
    return lambda: import_module(f"edge_runtime.postprocessing.{module}").TASK


TASKS: PluginRegistry[Task] = PluginRegistry({
    "classification": _task("classification"),
    "detection": _task("detection.task"),
    "raw": _task("raw"),
    "regression": _task("regression"),
})
DEFAULT_TASK = "raw"
