"""Config sections for what is built on results: `[homeassistant]`, and per pipeline
`[pipelines.tracker]`, `[[pipelines.zones]]` and `[pipelines.snapshot]`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edge_runtime.config.schema import prefix_safe, topic_safe
from edge_runtime.config.typed import Context, at_least, build


def check_polygon(points: tuple[tuple[float, ...], ...]) -> str | None:
    """A config check: None, or why these points are not a usable normalized polygon."""
    if len(points) < 3:
        return f"a zone needs at least 3 points, got {len(points)}"
    for i, point in enumerate(points):
        if len(point) != 2:
            return f"point {i} must be [x, y], got {list(point)}"
        if not all(0.0 <= v <= 1.0 for v in point):
            return f"point {i} {list(point)} is outside the frame: coordinates are 0-1"
    area = 0.5 * abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1)
                         in zip(points, points[1:] + points[:1])))
    if area <= 0.0:
        return "the points enclose no area"
    return None


@dataclass(frozen=True)
class HomeAssistantConfig:
    """`[homeassistant]`: MQTT discovery (homeassistant/ package)."""

    discovery: bool = False
    prefix: str = field(default="homeassistant", metadata={"check": prefix_safe})
    # A switch per pipeline to pause / resume inference through
    # {prefix}/{device}/{pipeline}/control/set. Off: the daemon subscribes to no command topic.
    control: bool = False
    # Detection pipelines without a `classes` allow-list get entities for the model's first
    # `max_labels` labels (a COCO model has 80: 160 entities nobody asked for).
    max_labels: int = field(default=10, metadata=at_least(1))


@dataclass(frozen=True)
class TrackerConfig:
    """`[pipelines.tracker]`: stable object ids and lifecycle events (tracking/)."""

    enabled: bool = True  # the table's presence turns tracking on; false turns it off again
    max_age: int = field(default=10, metadata=at_least(0))  # frames an unseen object survives
    min_hits: int = field(default=3, metadata=at_least(1))  # frames before an object is announced
    iou_threshold: float = field(default=0.3, metadata={
        "check": lambda v: None if 0.0 < v <= 1.0 else f"must be in (0, 1], got {v!r}"})


@dataclass(frozen=True)
class ZoneConfig:
    """One `[[pipelines.zones]]`: a named polygon, normalized frame coordinates."""

    name: str = field(metadata={"check": topic_safe})
    points: tuple[tuple[float, ...], ...] = field(metadata={"check": check_polygon})


@dataclass(frozen=True)
class SnapshotConfig:
    """`[pipelines.snapshot]`: annotated JPEGs on {prefix}/{device}/{pipeline}/snapshot."""

    enabled: bool = True
    min_interval: float = field(default=5.0, metadata=at_least(0))  # seconds between snapshots
    max_width: int = field(default=640, metadata=at_least(16))
    quality: int = field(default=80, metadata={
        "check": lambda v: None if 1 <= v <= 100 else f"must be between 1 and 100, got {v!r}"})


@dataclass(frozen=True)
class PipelineObjects:
    """A pipeline's tracker, zones and snapshot settings, as parsed."""

    tracker: TrackerConfig | None = None
    zones: tuple[ZoneConfig, ...] = ()
    snapshot: SnapshotConfig | None = None


def parse_homeassistant(table: Any, ctx: Context) -> HomeAssistantConfig:
    return build(HomeAssistantConfig, table, "homeassistant", ctx)


def parse_pipeline_objects(table: dict[str, Any], key: str, ctx: Context) -> PipelineObjects:
    """`tracker`, `zones`, `snapshot` of one [[pipelines]] table (absent: off)."""
    tracker = build(TrackerConfig, table["tracker"], f"{key}.tracker", ctx) \
        if "tracker" in table else None
    snapshot = build(SnapshotConfig, table["snapshot"], f"{key}.snapshot", ctx) \
        if "snapshot" in table else None
    zone_tables = table.get("zones", [])
    if not isinstance(zone_tables, list):
        raise ctx.error(f"{key}.zones", "expected [[pipelines.zones]] tables")
    zones = tuple(build(ZoneConfig, z, f"{key}.zones[{i}]", ctx) for i, z in enumerate(zone_tables))
    names = [zone.name for zone in zones]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ctx.error(f"{key}.zones[{i}].name", f"duplicate zone name {name!r}")
    if zones and (tracker is None or not tracker.enabled):
        raise ctx.error(f"{key}.zones", "zones need the tracker: add [pipelines.tracker]")
    return PipelineObjects(tracker if tracker and tracker.enabled else None, zones,
                           snapshot if snapshot and snapshot.enabled else None)
