"""The retained entity state of a pipeline: `{prefix}/{device}/{pipeline}/state`, JSON.

Home Assistant's entities read it with value templates (discovery.py). It is retained, so an
entity created after the last change still gets it, and it is published only when it says
something new: at once when its `key` changes (another top label, another count), otherwise at
most once per `REFRESH_S` (a classification score moving with every frame is not worth a
message per frame to every Home Assistant).

- classification: `{"ts", "label" (top label or null), "score", "classes"}`
- detection: `{"ts", "counts": {label: n} (every entity label, 0 included), "total",
  "zones": {zone: n}, "zone_labels": {zone: {label: n}}}`
- raw (and any other task): `{"ts", "outputs"}` (the result's task fields)
"""

from __future__ import annotations

import time
from typing import Any, Callable

REFRESH_S = 1.0


def entity_state(task: str, ts: str, fields: dict[str, Any], labels: tuple[str, ...],
                 zones: tuple[str, ...]) -> tuple[Any, dict[str, Any]]:
    """(key, state payload): the key is what must change for the state to go out at once."""
    if task == "classification":
        classes = fields.get("classes") or []
        top = classes[0] if classes else None
        state = {"ts": ts, "label": top["label"] if top else None,
                 "score": top["score"] if top else None, "classes": classes}
        return state["label"], state
    if task == "detection":
        counts = dict.fromkeys(labels, 0)
        per_zone = {zone: 0 for zone in zones}
        zone_labels: dict[str, dict[str, int]] = {zone: {} for zone in zones}
        detections = fields.get("detections") or []
        for detection in detections:
            label = str(detection["label"])
            counts[label] = counts.get(label, 0) + 1
            for zone in detection.get("zones", ()):
                per_zone[zone] = per_zone.get(zone, 0) + 1
                inside = zone_labels.setdefault(zone, {})
                inside[label] = inside.get(label, 0) + 1
        state = {"ts": ts, "counts": counts, "total": len(detections), "zones": per_zone,
                 "zone_labels": zone_labels}
        return (tuple(counts.items()), tuple(per_zone.items())), state
    return None, {"ts": ts, **fields}


class StateThrottle:
    """Decides which states of one pipeline are published (see the module docstring)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._key: Any = object()
        self._sent_at = float("-inf")

    def due(self, key: Any) -> bool:
        now = self._clock()
        if key != self._key or now - self._sent_at >= REFRESH_S:
            self._key, self._sent_at = key, now
            return True
        return False
