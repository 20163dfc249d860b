"""The JSON Schemas of the result and entity-state messages, assembled from the task plugins.

The envelope (who, when, which frame and model) is written here; each task's part (its payload
field and the schema of its value, its entity state) comes from its `Task` (postprocessing/
task.py), so a new task documents its own payload and nothing else changes. There is no file to
regenerate: `edge-runtime schema result` (or `state`) prints them; the event schema, which no
task contributes to, is the file `schemas/event.schema.json`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from edge_runtime.postprocessing.registry import TASKS
from edge_runtime.postprocessing.task import Task

SCHEMAS = Path(__file__).resolve().parent / "schemas"
DRAFT = "https://json-schema.org/draft/2020-12/schema"
BASE_ID = "https://github.com/edge-runtime/edge-runtime/schemas/"


def _envelope() -> dict[str, Any]:
    return {
        "schema": {"const": 1},
        "device": {"type": "string", "minLength": 1},
        "pipeline": {"type": "string", "minLength": 1},
        "seq": {"type": "integer", "minimum": 0},
        "ts": {"type": "string",
               "pattern": "^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{3}Z$"},
        "source": {
            "type": "object",
            "required": ["frame"],
            "properties": {
                "frame": {"type": "integer", "minimum": 0},
                "width": {"type": "integer", "minimum": 1},
                "height": {"type": "integer", "minimum": 1},
                "name": {"type": "string"},
            },
        },
        "model": {
            "type": "object",
            "required": ["name", "sha256"],
            "properties": {"name": {"type": "string"},
                           "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}},
        },
        "timing_ms": {"type": "object",
                      "additionalProperties": {"type": "number", "minimum": 0}},
    }


# [pipelines.escalate] (pipeline/cascade.py): which model answered, and why not the bigger one
CASCADE = {
    "escalated": {"type": "boolean"},
    "escalation_error": {
        "type": "string",
        "description": "[pipelines.escalate]: the pipeline model was unsure but the escalation "
                       "model failed (or is down until its reload), so this is the pipeline "
                       "model's answer; why",
    },
}
# [[pipelines.stages]]: a stage's entry for a detection when its model had no result
STAGE_ERROR = {
    "error": {
        "type": "string",
        "description": "a stage only: its model had no result for this detection (it failed, or "
                       "is down until its reload); the task fields are absent",
    },
}


def result_schema(tasks: Mapping[str, Task] = TASKS) -> dict[str, Any]:
    """One result message: the envelope plus one task's field (`taskFields`: any task's)."""
    fields = {task.field: {"$ref": f"#/$defs/{task.field}"} for task in tasks.values()}
    envelope = _envelope()
    return {
        "$schema": DRAFT,
        "$id": BASE_ID + "result.schema.json",
        "title": "edge-runtime result",
        "description": "One message on {prefix}/{device}/{pipeline}/result.",
        "type": "object",
        "required": list(envelope),
        "properties": {**envelope, **fields, **CASCADE},
        "$defs": {
            **{task.field: dict(task.schema) for task in tasks.values()},
            "taskFields": {
                "type": "object",
                "description": "a task's part of a result: what a pipeline of that task "
                               "publishes",
                "properties": {**fields, **STAGE_ERROR},
            },
        },
    }


def state_schema(tasks: Mapping[str, Task] = TASKS) -> dict[str, Any]:
    """The retained entity state: `ts` plus one task's state (`Task.entity_state`)."""
    variants = []
    for name, task in tasks.items():
        variant = task.state_variant()
        variants.append({"title": name, "required": list(variant["required"]),
                         "properties": dict(variant["properties"])})
    return {
        "$schema": DRAFT,
        "$id": BASE_ID + "state.schema.json",
        "title": "edge-runtime entity state",
        "description": "The retained message on {prefix}/{device}/{pipeline}/state "
                       "([homeassistant] discovery = true): what the pipeline's Home Assistant "
                       "entities show. Sent at once when that changes, otherwise at most once a "
                       "second.",
        "type": "object",
        "required": ["ts"],
        "properties": {"ts": {"type": "string", "description": "capture time of the result it "
                                                               "reflects (UTC ISO 8601, ms)"}},
        "oneOf": variants,
    }


def as_text(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2) + "\n"


def event_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMAS / "event.schema.json").read_text("utf-8"))
    return schema


SCHEMAS_BY_MESSAGE = {"result": result_schema, "state": state_schema, "event": event_schema}
