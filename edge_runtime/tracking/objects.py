"""From per-frame detections to tracked objects and their lifecycle events.

`ObjectTracker.process` takes one result's `detections` (payload dicts), gives each an `id` (its
track) and, with zones configured, `zones`; it returns the events that frame caused:

- `new` when a track is confirmed (matched `min_hits` times): an object, not one-frame noise;
- `update` when a confirmed object's label or set of zones changes (a moving box is not news);
- `end` when its track ends (unseen for more than `max_age` frames) or the pipeline stops.

Each event carries the object's id, label, first and last seen (capture times), current score
and box, the best score seen and its box, current zones and every zone entered so far. Events
are results (the publisher gives them a `seq` and the durable outbox keeps them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_runtime.messages.payload import SCHEMA_VERSION, utc_timestamp
from edge_runtime.tracking.tracker import Track, Tracker
from edge_runtime.tracking.zones import Zone, zones_of


@dataclass
class _Object:
    """What the events say about one track."""

    first_seen: float
    last_seen: float
    score: float = 0.0
    box: dict[str, float] = field(default_factory=dict)
    best_score: float = -1.0
    best_box: dict[str, float] = field(default_factory=dict)
    zones: list[str] = field(default_factory=list)
    entered_zones: list[str] = field(default_factory=list)
    announced: tuple[str, tuple[str, ...]] | None = None  # (label, zones) last published


@dataclass(frozen=True)
class FrameObjects:
    events: list[dict[str, Any]]  # event payloads without their seq
    appeared: bool  # an object was confirmed in this frame (a snapshot is worth taking)
    zone_counts: dict[str, int]  # zone -> detections of this frame in it


class ObjectTracker:
    def __init__(self, device: str, pipeline: str, tracker: Tracker,
                 zones: tuple[Zone, ...] = ()) -> None:
        self.device = device
        self.pipeline = pipeline
        self.tracker = tracker
        self.zones = zones
        self._objects: dict[int, _Object] = {}

    def process(self, detections: list[dict[str, Any]], captured: float) -> FrameObjects:
        """Annotate `detections` in place (`id`, `zones`); the events of this frame."""
        boxes = np.array([[d["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")]
                          for d in detections], dtype=np.float64).reshape(-1, 4)
        update = self.tracker.update(boxes, [str(d["label"]) for d in detections],
                                     [float(d["score"]) for d in detections])
        events: list[dict[str, Any]] = []
        appeared = False
        counts = {zone.name: 0 for zone in self.zones}
        for detection, track in zip(detections, update.track_of):
            detection["id"] = track.id
            obj = self._objects.get(track.id)
            if obj is None:
                obj = self._objects[track.id] = _Object(first_seen=captured, last_seen=captured)
            obj.last_seen = captured
            obj.score, obj.box = float(detection["score"]), detection["box"]
            if obj.score > obj.best_score:
                obj.best_score, obj.best_box = obj.score, detection["box"]
            if self.zones:
                detection["zones"] = obj.zones = zones_of(detection["box"], self.zones)
                for name in obj.zones:
                    counts[name] += 1
                    if name not in obj.entered_zones:
                        obj.entered_zones.append(name)
            if not self.tracker.confirmed(track):
                continue
            state = (track.label, tuple(obj.zones))
            if obj.announced is None:
                events.append(self._event("new", track, obj, captured))
                appeared = True
            elif obj.announced != state:
                events.append(self._event("update", track, obj, captured))
            obj.announced = state
        for track in update.ended:
            events.extend(self._end(track, captured))
        return FrameObjects(events, appeared, counts)

    def close(self, now: float) -> list[dict[str, Any]]:
        """`end` for every announced object (the pipeline stops); the tracker starts afresh."""
        events = [e for track in self.tracker.tracks for e in self._end(track, now)]
        self.tracker.tracks = []
        return events

    def _end(self, track: Track, now: float) -> list[dict[str, Any]]:
        obj = self._objects.pop(track.id, None)
        if obj is None or obj.announced is None:
            return []
        obj.zones = []
        return [self._event("end", track, obj, now)]

    def _event(self, kind: str, track: Track, obj: _Object, now: float) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "device": self.device,
            "pipeline": self.pipeline,
            "seq": None,
            "ts": utc_timestamp(now),
            "type": kind,
            "id": track.id,
            "label": track.label,
            "first_seen": utc_timestamp(obj.first_seen),
            "last_seen": utc_timestamp(obj.last_seen),
            "score": obj.score,
            "box": obj.box,
            "best_score": obj.best_score,
            "best_box": obj.best_box,
            "zones": list(obj.zones),
            "entered_zones": list(obj.entered_zones),
        }
