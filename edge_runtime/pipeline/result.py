"""A result's message body: who and what produced it, plus the task's fields (no `seq` yet)."""

from __future__ import annotations

from typing import Any

from edge_runtime.messages.payload import result_payload
from edge_runtime.sources.base import Frame


def result_body(device: str, pipeline: str, frame: Frame, image: bool, model: dict[str, Any],
                timing_ms: dict[str, float], fields: dict[str, Any]) -> dict[str, Any]:
    """`image`: the source's kind is an image (windows of values have no pixel size).
    `model`: name and sha256 of the model that produced `fields` (escalation may change it)."""
    source: dict[str, Any] = {"frame": frame.index}
    if image:
        source.update(width=frame.width, height=frame.height)
    if frame.name:
        source["name"] = frame.name
    return result_payload(
        device=device,
        pipeline=pipeline,
        captured=frame.captured,
        source=source,
        model=model,
        timing_ms=timing_ms,
        task_fields=fields,
    )
