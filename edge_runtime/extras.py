"""The daemon-wide pieces built on results: each pipeline's ResultObserver (pipeline/observer.py),
the Home Assistant service (a listener on the publisher's broker connection) and the `snapshots`
thread. Composition, like daemon.py: it joins pipeline/ with publishing/, which pipeline/ never
imports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from edge_runtime.config.schema import AppConfig
from edge_runtime.homeassistant.service import HomeAssistantService
from edge_runtime.homeassistant.snapshot import SnapshotPolicy, SnapshotWorker
from edge_runtime.messages.topics import Topics
from edge_runtime.pipeline.observer import ResultObserver, discovery_config, plan
from edge_runtime.postprocessing.task import EntityContext
from edge_runtime.supervision.heartbeat import Heartbeats
from edge_runtime.tracking.objects import ObjectTracker
from edge_runtime.tracking.tracker import Tracker


@dataclass
class Extras:
    """The daemon-wide pieces: the snapshots thread and the Home Assistant service."""

    observers: dict[str, ResultObserver]
    snapshots: SnapshotWorker | None
    homeassistant: HomeAssistantService | None

    @staticmethod
    def build(app: AppConfig, parts: Sequence[Any], publisher: Any,
              heartbeats: Heartbeats | None = None,
              control: Callable[[str, bool], None] | None = None) -> "Extras":
        topics = Topics(app.mqtt.topic_prefix, app.device.id)
        ha_config = discovery_config(app)
        plans = plan(app, parts)
        infos = [info for _, _, _, info in plans]
        ha = None
        if ha_config is not None:
            ha = HomeAssistantService(ha_config, app.device.id, topics, infos,
                                      lambda t, p: publisher.publish_latest(t, p), control)
            publisher.add_listener(ha)
        snapshots = None
        if any(objects and objects.snapshot for _, objects, _, _ in plans):
            snapshots = SnapshotWorker(
                lambda name, jpeg: publisher.publish_latest(topics.snapshot(name), jpeg),
                heartbeats)
        observers = {}
        for part, objects, zones, info in plans:
            name = part.config.name
            tracker = objects.tracker if objects else None
            snap = objects.snapshot if objects else None
            observers[name] = ResultObserver(
                pipeline=name, task=part.task_plugin,
                entity=EntityContext(info.labels, tuple(z.name for z in zones)),
                events=publisher.publish_events,
                objects=ObjectTracker(app.device.id, name, Tracker(
                    tracker.max_age, tracker.min_hits, tracker.iou_threshold), zones)
                if tracker else None,
                state=ha.state if ha else None,
                snapshots=snapshots if snap else None,
                snapshot_policy=SnapshotPolicy(snap.min_interval) if snap else None,
                max_width=snap.max_width if snap else 640,
                quality=snap.quality if snap else 80)
        return Extras(observers, snapshots, ha)

    def needed(self, name: str) -> ResultObserver | None:
        """The pipeline's observer, or None when it has nothing to do."""
        observer = self.observers.get(name)
        if observer is None or (observer.objects is None and observer.state is None
                                and observer.snapshot_policy is None):
            return None
        return observer
