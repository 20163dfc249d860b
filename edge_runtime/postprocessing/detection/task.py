"""The `detection` task plugin: the `detections` field, its schema, `change` summary and entities.

Home Assistant gets, per entity label (the allow-list's, else the first `max_labels`), a count
sensor and a presence binary_sensor, and a count sensor per zone. Their retained state counts the
latest result's objects by label and zone; it goes out at once when a count changes.
"""

from __future__ import annotations

from typing import Any, Hashable

from edge_runtime.postprocessing.detection.detector import Detector
from edge_runtime.postprocessing.detection.options import DetectionOptions
from edge_runtime.postprocessing.task import Entity, EntityContext, Task, jinja_string


def _unit_interval() -> dict[str, Any]:
    return {"type": "number", "minimum": 0, "maximum": 1}


SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["index", "label", "score", "box"],
        "properties": {
            "index": {"type": "integer", "minimum": 0},
            "label": {"type": "string"},
            "score": {"type": "number"},
            "box": {
                "type": "object",
                "required": ["xmin", "ymin", "xmax", "ymax"],
                "properties": {k: _unit_interval() for k in ("xmin", "ymin", "xmax", "ymax")},
            },
            "id": {
                "type": "integer", "minimum": 1,
                "description": "[pipelines.tracker]: the tracked object this detection belongs "
                               "to, stable across frames (unique within one run of the daemon; "
                               "with the event's first_seen, unique)",
            },
            "zones": {
                "type": "array", "items": {"type": "string"},
                "description": "[[pipelines.zones]]: the zones the box's bottom center is in, in "
                               "config order",
            },
            "keypoints": {
                "type": "array",
                "items": {"type": "object", "required": ["x", "y"],
                          "properties": {"x": {"type": "number"}, "y": {"type": "number"}}},
            },
            "stages": {
                "type": "object",
                "description": "[[pipelines.stages]] results for this detection: stage name -> "
                               "that stage model's task fields",
                "additionalProperties": {"$ref": "#/$defs/taskFields", "type": "object"},
            },
        },
    },
}


def label_set(detections: list[dict[str, Any]]) -> Hashable:
    """What "the result changed" compares: the set of detected labels."""
    return frozenset(str(d.get("label", d.get("index"))) for d in detections)


def entities(ctx: EntityContext) -> list[Entity]:
    made = []
    for label in ctx.labels:
        ref = "value_json.counts[" + jinja_string(label) + "]"
        made.append(Entity(("count", label), "sensor", f"{label} count",
                           f"{{{{ {ref} | default(0) }}}}",
                           options={"state_class": "measurement",
                                    "unit_of_measurement": "objects", "icon": "mdi:counter"}))
        made.append(Entity(("present", label), "binary_sensor", label,
                           f"{{{{ 'ON' if ({ref} | default(0)) > 0 else 'OFF' }}}}",
                           options={"device_class": "occupancy"}))
    for zone in ctx.zones:
        ref = "value_json.zones[" + jinja_string(zone) + "]"
        made.append(Entity(("zone", zone), "sensor", f"{zone} zone count",
                           f"{{{{ {ref} | default(0) }}}}", attributes=True,
                           attributes_template="{{ (value_json.zone_labels["
                           + jinja_string(zone) + "] | default({})) | tojson }}",
                           options={"state_class": "measurement",
                                    "unit_of_measurement": "objects",
                                    "icon": "mdi:vector-polygon"}))
    return made


def state(ts: str, detections: list[dict[str, Any]] | None,
          ctx: EntityContext) -> tuple[Hashable, dict[str, Any]]:
    """`{"ts", "counts": {label: n} (every entity label, 0 included), "total", "zones": {zone: n},
    "zone_labels": {zone: {label: n}}}`; the key is the counts."""
    counts = dict.fromkeys(ctx.labels, 0)
    per_zone = dict.fromkeys(ctx.zones, 0)
    zone_labels: dict[str, dict[str, int]] = {zone: {} for zone in ctx.zones}
    detections = detections or []
    for detection in detections:
        label = str(detection["label"])
        counts[label] = counts.get(label, 0) + 1
        for zone in detection.get("zones", ()):
            per_zone[zone] = per_zone.get(zone, 0) + 1
            inside = zone_labels.setdefault(zone, {})
            inside[label] = inside.get(label, 0) + 1
    payload = {"ts": ts, "counts": counts, "total": len(detections), "zones": per_zone,
               "zone_labels": zone_labels}
    return (tuple(counts.items()), tuple(per_zone.items())), payload


def _counts(description: str) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0},
            "description": description}


STATE_SCHEMA = {
    "required": ["counts", "total", "zones", "zone_labels"],
    "properties": {
        "counts": _counts("label -> objects in the latest result; every entity label is present "
                          "(0 included)"),
        "total": {"type": "integer", "minimum": 0},
        "zones": _counts("zone -> objects whose box's bottom center is in it"),
        "zone_labels": {"type": "object",
                        "additionalProperties": {"type": "object", "additionalProperties": {
                            "type": "integer", "minimum": 0}},
                        "description": "zone -> label -> objects"},
    },
}

TASK = Task(DetectionOptions, Detector, "detections", SCHEMA, summary=label_set,
            entities=entities, state=state, state_schema=STATE_SCHEMA)
