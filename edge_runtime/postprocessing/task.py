"""The task plugin contract: everything the rest of the daemon knows about a task, in one object.

A task plugin is one module that builds a `Task` and one line in registry.py. The `Task` says:

- `field`: the result payload field it fills (`classes`, `detections`, ...); its postprocessor
  returns `{field: value}`;
- `schema`: the JSON Schema of that value; the result schema is assembled from every task's
  (`edge_runtime/result_schema.py`), so a task's payload is documented where it is made;
- `summary`: what `publish.mode = "change"` compares (the top label, the set of labels), or None
  when the task's results have no such state (then `change` is refused at `check`);
- `confidence`: how sure a result is, which `[pipelines.escalate] below` compares (the top
  score), or None when the task has no such score (then escalation is refused at `check`);
- `entities` / `state`: the Home Assistant entities its results feed, as plain descriptions
  (`Entity`, turned into discovery components by homeassistant/discovery.py), and the retained
  state they read; by default one sensor whose attributes are the task's value.

The publish policy, discovery and the entity state ask the task; none of them knows a task name or
a payload key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Mapping

from edge_runtime.postprocessing.base import Postprocessor, TaskContext


@dataclass(frozen=True)
class EntityContext:
    """What a pipeline's entities depend on besides the task."""

    labels: tuple[str, ...] = ()  # labels entities are made for (Postprocessor.entity_labels)
    zones: tuple[str, ...] = ()  # [[pipelines.zones]] names


@dataclass(frozen=True)
class Entity:
    """One Home Assistant entity reading the pipeline's retained state (JSON, from `state`).

    Discovery adds the ids (from the pipeline and `key`), the state topic, availability and the
    device; the task gives the rest.
    """

    key: tuple[str, ...]  # id parts, unique within the pipeline; each made id-safe by discovery
    platform: str  # "sensor", "binary_sensor", ...
    name: str  # shown after the pipeline's name
    value_template: str  # Jinja on the state JSON (`value_json`)
    attributes: bool = False  # the state JSON (or `attributes_template` of it) as attributes
    attributes_template: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)  # icon, device_class, unit, ...


def jinja_string(value: str) -> str:
    """A Jinja string literal (labels may hold quotes or backslashes)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def value_entities(task_field: str) -> Callable[[EntityContext], list[Entity]]:
    """The default: one sensor (the result's time) whose attributes are the task's value."""
    def entities(ctx: EntityContext) -> list[Entity]:
        return [Entity((task_field,), "sensor", task_field, "{{ value_json.ts }}",
                       attributes=True, options={"icon": "mdi:code-json"})]
    return entities


def value_state(task_field: str) -> Callable[[str, Any, EntityContext],
                                             tuple[Hashable, dict[str, Any]]]:
    """The default state: `{"ts", <field>: value}`, refreshed (not pushed on change)."""
    def state(ts: str, value: Any, ctx: EntityContext) -> tuple[Hashable, dict[str, Any]]:
        return None, {"ts": ts, task_field: value}
    return state


@dataclass(frozen=True)
class Task:
    """A task plugin (see the module docstring)."""

    options: type  # dataclass validated from [pipelines.postprocess] over the metadata's
    create: Callable[[Any, TaskContext], Postprocessor]
    field: str
    schema: Mapping[str, Any]  # JSON Schema of the field's value ($defs of the result schema)
    summary: Callable[[Any], Hashable] | None = None  # `change` publishing compares this
    confidence: Callable[[Any], float] | None = None  # escalation compares this with `below`
    entities: Callable[[EntityContext], list[Entity]] | None = None  # None: value_entities
    state: Callable[[str, Any, EntityContext], tuple[Hashable, dict[str, Any]]] | None = None
    #: `{"required", "properties"}` of the `state` payload besides `ts` (None: the default
    #: state's, `{field: schema}`)
    state_schema: Mapping[str, Any] | None = None

    @property
    def changes(self) -> bool:
        """Its results can be published on change (`publish.mode = "change"`)."""
        return self.summary is not None

    def summarize(self, fields: dict[str, Any]) -> Hashable:
        """What `change` publishing compares for a result's task fields."""
        if self.summary is None:
            raise ValueError(f"results with {self.field!r} have nothing to compare for 'change'")
        return self.summary(fields[self.field])

    def certainty(self, fields: dict[str, Any]) -> float:
        """How sure a result is (escalation asks the bigger model below a threshold)."""
        if self.confidence is None:
            raise ValueError(f"results with {self.field!r} have no score to be unsure about")
        return self.confidence(fields[self.field])

    def ha_entities(self, ctx: EntityContext) -> list[Entity]:
        return (self.entities or value_entities(self.field))(ctx)

    def entity_state(self, ts: str, fields: dict[str, Any],
                     ctx: EntityContext) -> tuple[Hashable, dict[str, Any]]:
        """(key, state payload): the key is what must change for the state to go out at once."""
        return (self.state or value_state(self.field))(ts, fields.get(self.field), ctx)

    def state_variant(self) -> Mapping[str, Any]:
        """`{"required": [...], "properties": {...}}` of its entity state besides `ts`."""
        if self.state_schema is not None:
            return self.state_schema
        return {"required": [self.field], "properties": {self.field: self.schema}}
