"""Home Assistant MQTT device-based discovery: one retained message describing the whole daemon.

`{ha prefix}/device/{object id}/config` holds `dev` (one device per daemon), `o` (origin),
shared availability (the daemon's retained status topic: `online` / `offline`) and `cmps`, one
entry per entity. Home Assistant creates, updates or removes the entities from it; an empty
retained payload removes them all (`ha-remove`).

Entities per pipeline come from its task (`Task.ha_entities`, postprocessing/task.py: plain
descriptions this module turns into components): classification a sensor (top label, score and
classes as attributes); detection a count sensor and a presence binary_sensor per label and a
count sensor per zone; raw (and any task without its own) a sensor whose attributes are the
task's value. Every pipeline adds diagnostics read from the retained stats message and, with
`control = true`, a switch; image pipelines with snapshots add an `image` entity.

Ids are stable (derived from the device id, pipeline name and label only) and use only
`[a-zA-Z0-9_-]`: anything else becomes `_`, plus a short hash of the original when something
had to be replaced, so "traffic light" and "traffic_light" stay two entities.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from edge_runtime import __version__
from edge_runtime.messages.topics import Topics
from edge_runtime.postprocessing.registry import TASKS
from edge_runtime.postprocessing.task import Entity, EntityContext, jinja_string

ORIGIN = {"name": "edge-runtime", "sw": __version__}
_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")
_ENTITY = re.compile(r"[^a-z0-9_]")  # what an entity id may hold


def slug(value: str) -> str:
    """A stable id part valid for Home Assistant ([a-zA-Z0-9_-])."""
    safe = _UNSAFE.sub("_", value)
    if safe != value or not safe:
        safe += "_" + hashlib.sha1(value.encode("utf-8")).hexdigest()[:6]
    return safe


@dataclass(frozen=True)
class PipelineInfo:
    """What discovery needs to know about one pipeline."""

    name: str
    task: str
    labels: tuple[str, ...] = ()  # detection: one count + presence entity each
    zones: tuple[str, ...] = ()
    snapshot: bool = False  # an image entity for its snapshots
    live: bool = False  # a live source (camera, stream, command, ...): a source reconnects sensor


@dataclass(frozen=True)
class HaTopics:
    """The daemon's topics that Home Assistant entities read or write."""

    topics: Topics
    ha_prefix: str

    def discovery(self, object_id: str) -> str:
        return f"{self.ha_prefix}/device/{object_id}/config"

    @property
    def ha_status(self) -> str:
        return f"{self.ha_prefix}/status"

    def state(self, pipeline: str) -> str:
        return self.topics.state(pipeline)

    def snapshot(self, pipeline: str) -> str:
        return self.topics.snapshot(pipeline)

    def control(self, pipeline: str) -> str:
        return self.topics.control(pipeline)

    def control_set(self, pipeline: str) -> str:
        return self.topics.control_set(pipeline)


@dataclass
class _Builder:
    device: str
    topics: HaTopics
    cmps: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, pipeline: str, kind: str, platform: str, name: str,
            **options: Any) -> None:
        key = "_".join([slug(pipeline), kind])
        unique = f"edge_runtime_{slug(self.device)}_{key}"
        self.cmps[key] = {"p": platform, "name": name, "unique_id": unique,
                          "default_entity_id": f"{platform}.{_ENTITY.sub('_', unique.lower())}",
                          **options}

    def add_entity(self, pipeline: str, entity: Entity) -> None:
        """A task's entity, reading the pipeline's retained state."""
        state = self.topics.state(pipeline)
        options: dict[str, Any] = {"state_topic": state, "value_template": entity.value_template}
        if entity.attributes:
            options["json_attributes_topic"] = state
        if entity.attributes_template:
            options["json_attributes_template"] = entity.attributes_template
        self.add(pipeline, "_".join(slug(part) for part in entity.key), entity.platform,
                 f"{pipeline} {entity.name}", **options, **entity.options)


# (kind, name suffix, value in the stats message's pipelines.<name>, unit)
DIAGNOSTICS = (
    ("results_per_s", "results/s", "results_per_s", "results/s"),
    ("inference_ms", "inference", "interpreter.invoke_ms", "ms"),
    ("frames_dropped", "frames dropped", "frames_dropped", None),
    ("outbox_depth", "outbox depth", "outbox_depth", None),
    ("delegate", "delegate", "delegate", None),
)


def _diagnostics(b: _Builder, info: PipelineInfo) -> None:
    stats = b.topics.topics.stats
    for kind, suffix, path, unit in DIAGNOSTICS:
        ref = "value_json.pipelines[" + jinja_string(info.name) + "]." + path
        options: dict[str, Any] = {"state_topic": stats, "entity_category": "diagnostic",
                                   "value_template": f"{{{{ {ref} }}}}"}
        if unit:
            options.update(unit_of_measurement=unit, state_class="measurement")
        b.add(info.name, kind, "sensor", f"{info.name} {suffix}", **options)
    if info.live:  # a camera or stream that drops and comes back shows here
        ref = "value_json.pipelines[" + jinja_string(info.name) + "].source_reconnects"
        b.add(info.name, "source_reconnects", "sensor", f"{info.name} source reconnects",
              state_topic=stats, entity_category="diagnostic", value_template=f"{{{{ {ref} }}}}",
              state_class="total_increasing")


def object_id(device: str) -> str:
    return f"edge_runtime_{slug(device)}"


def discovery_payload(device: str, topics: HaTopics, pipelines: list[PipelineInfo],
                      control: bool) -> dict[str, Any]:
    """The device-based discovery message for a daemon with these pipelines."""
    b = _Builder(device, topics)
    for info in pipelines:
        for entity in TASKS[info.task].ha_entities(EntityContext(info.labels, info.zones)):
            b.add_entity(info.name, entity)
        if info.snapshot:
            b.add(info.name, "snapshot", "image", f"{info.name} snapshot",
                  image_topic=topics.snapshot(info.name), content_type="image/jpeg")
        if control:
            b.add(info.name, "running", "switch", f"{info.name} inference",
                  command_topic=topics.control_set(info.name),
                  state_topic=topics.control(info.name), icon="mdi:play-pause")
        _diagnostics(b, info)
    return {
        "dev": {"ids": [object_id(device)], "name": f"edge-runtime {device}",
                "mf": "edge-runtime", "mdl": "edge-runtime daemon", "sw": __version__},
        "o": ORIGIN,
        "avty_t": topics.topics.status,
        "qos": 1,
        "cmps": b.cmps,
    }


def with_removals(payload: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    """`payload` plus a platform-only entry for each entity of `previous` it no longer has.

    Home Assistant removes a component whose entry holds nothing but its platform: a pipeline
    (or a label) taken out of the config takes its entities with it.
    """
    if not previous or not isinstance(previous.get("cmps"), dict):
        return payload
    cmps = dict(payload["cmps"])
    for key, entry in previous["cmps"].items():
        if key not in cmps and isinstance(entry, dict) and len(entry) > 1 and "p" in entry:
            cmps[key] = {"p": entry["p"]}
    return {**payload, "cmps": cmps}
