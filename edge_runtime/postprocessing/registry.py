"""Every task plugin, registered in one place: task name -> its `Task` (task.py).

Adding a task is its module (options, postprocessor, payload field and schema, `change`
summary, Home Assistant entities) plus one line here.
"""

from __future__ import annotations

from edge_runtime.postprocessing import classification
from edge_runtime.postprocessing import raw
from edge_runtime.postprocessing import regression
from edge_runtime.postprocessing.detection import task as detection
from edge_runtime.postprocessing.task import Task

TASKS: dict[str, Task] = {
    "classification": classification.TASK,
    "detection": detection.TASK,
    "raw": raw.TASK,
    "regression": regression.TASK,
}
DEFAULT_TASK = "raw"
