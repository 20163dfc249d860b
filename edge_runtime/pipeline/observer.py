"""What a pipeline does with a result besides publishing it: tracking, events, states, snapshots.

The runner's publishing thread calls `observe` with every post-processed result, before the
publish policy (so a published result carries its detections' `id` and `zones`, and an event or
a state is never held back by a policy meant for results). In order:

1. tracking (tracking/objects.py): ids and zones on the detections, lifecycle events, committed
   to the outbox with their own seq (`<pipeline>/events`);
2. the Home Assistant entity state (homeassistant/states.py), a retained latest value, when due;
3. a snapshot request (homeassistant/snapshot.py) when the policy says so: the encoding runs on
   the `snapshots` thread, this thread only hands over a reference to the frame.

`plan` checks up front what a pipeline cannot do (a tracker needs detections, a snapshot an
image source) and raises ConfigError with the key path; `extras.py` (beside the daemon) builds
the observers, the Home Assistant service and the snapshots thread from it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from edge_runtime.config.integration import HomeAssistantConfig
from edge_runtime.config.schema import AppConfig
from edge_runtime.config.typed import ConfigError
from edge_runtime.homeassistant.discovery import PipelineInfo
from edge_runtime.homeassistant.snapshot import (
    SnapshotPolicy,
    SnapshotRequest,
    SnapshotWorker,
)
from edge_runtime.homeassistant.states import StateThrottle
from edge_runtime.messages.payload import encode, utc_timestamp
from edge_runtime.postprocessing.task import EntityContext, Task
from edge_runtime.ratelimit import RateLimitedLogger
from edge_runtime.sources.base import Frame
from edge_runtime.tracking.objects import ObjectTracker
from edge_runtime.tracking.zones import Zone

logger = logging.getLogger(__name__)

EventSink = Callable[[str, Sequence[dict[str, Any]]], Any]  # publisher.publish_events


@dataclass
class ObserverStats:
    events: int = 0  # events committed
    snapshots: int = 0  # snapshot requests handed to the snapshots thread
    observe_ms: float = 0.0  # time spent in observe() on the publishing thread, total


@dataclass
class ResultObserver:
    pipeline: str
    task: Task  # the entity state and what a result shows come from the task plugin
    entity: EntityContext  # the entities' labels and zones
    events: EventSink
    objects: ObjectTracker | None = None
    state: Callable[[str, bytes], None] | None = None  # HomeAssistantService.state
    snapshots: SnapshotWorker | None = None
    snapshot_policy: SnapshotPolicy | None = None
    max_width: int = 640
    quality: int = 80
    stats: ObserverStats = field(default_factory=ObserverStats)
    _throttle: StateThrottle = field(default_factory=StateThrottle)
    _warn: RateLimitedLogger = field(default_factory=lambda: RateLimitedLogger(logger))

    def observe(self, frame: Frame, fields: dict[str, Any]) -> None:
        t0 = time.perf_counter()
        appeared = False
        if self.objects is not None and "detections" in fields:
            tracked = self.objects.process(fields["detections"], frame.captured)
            appeared = tracked.appeared
            self._send_events(tracked.events)
        if self.state is not None:
            key, state = self.task.entity_state(utc_timestamp(frame.captured), fields,
                                                self.entity)
            if self._throttle.due(key):
                self.state(self.pipeline, encode(state))
        if self.snapshot_policy is not None and self.snapshots is not None:
            shown = self.task.summarize(fields) if self.task.changes else None
            if self.snapshot_policy.should_take(shown, appeared):
                self.snapshots.submit(SnapshotRequest(self.pipeline, frame.data, fields,
                                                      self.max_width, self.quality))
                self.stats.snapshots += 1
        self.stats.observe_ms += (time.perf_counter() - t0) * 1e3

    def close(self) -> None:
        """The pipeline stops: every announced object ends."""
        if self.objects is not None:
            self._send_events(self.objects.close(time.time()))

    def _send_events(self, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        try:
            self.events(self.pipeline, events)
            self.stats.events += len(events)
        except Exception as exc:  # noqa: BLE001 - like a result's: counted and logged, not fatal
            self._warn.warning("events", "pipeline %s: events could not be stored: %r",
                               self.pipeline, exc)


def plan(app: AppConfig, parts: Sequence[Any]) -> list[tuple[Any, Any, tuple[Zone, ...], PipelineInfo]]:
    """Per pipeline: (parts, objects config, zones, what Home Assistant gets); ConfigError for
    what a pipeline cannot do (`check` and `run` call this before anything starts)."""
    ha_config = discovery_config(app)
    plans = []
    for part in parts:
        config = part.config
        objects = config.objects
        key = f"pipelines[{config.index}]"
        image = not part.source.kind.windowed
        labels = part.postprocess.entity_labels(ha_config.max_labels if ha_config else 0)
        if objects and objects.tracker and part.task_plugin.field != "detections":
            raise ConfigError(app.file, f"{key}.tracker",
                              f"tracking needs detections; task {part.task!r} has none")
        if objects and objects.snapshot and not image:
            raise ConfigError(app.file, f"{key}.snapshot",
                              f"snapshots need an image source, not {config.source.type!r}")
        zones = tuple(Zone(z.name, z.points) for z in objects.zones) if objects else ()
        info = PipelineInfo(config.name, part.task, labels, tuple(z.name for z in zones),
                            bool(objects and objects.snapshot), live=part.source.live)
        plans.append((part, objects, zones, info))
    return plans


def discovery_config(app: AppConfig) -> HomeAssistantConfig | None:
    """`[homeassistant]` when discovery is on, else None."""
    ha = app.homeassistant
    return ha if ha is not None and ha.discovery else None
