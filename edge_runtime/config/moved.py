"""Keys that moved: an old config names its key and the key's new place, instead of "unknown key".

Pre-1.0 the config is reorganised freely; each move is one line here, so `edge-runtime check` on
an old file says exactly what to change.
"""

from __future__ import annotations

from typing import Any

from edge_runtime.config.typed import Context

# "table.key" (top level) -> where it lives now
MOVED = {
    "mqtt.outbox_path": "[outbox] path",
    "mqtt.outbox_max_messages": "[outbox] max_messages",
    "mqtt.outbox_max_bytes": "[outbox] max_bytes",
    "mqtt.outbox_sync": "[outbox] sync",
    "mqtt.stats_interval": "[stats] interval",
    "mqtt.reconnect_min_delay": "[retry.broker] min_delay",
    "mqtt.reconnect_max_delay": "[retry.broker] max_delay",
}
# (source type, key) -> what to use instead: one pacing key per source
SOURCE_MOVED = {
    ("csv", "fps"): "rate (rows per second: a csv source paces its rows; results come every "
                    "`stride` rows)",
}


def check_moved(doc: dict[str, Any], ctx: Context) -> None:
    """ConfigError on the first old key in `doc`, naming it and its new place."""
    for old, new in MOVED.items():
        table, _, key = old.partition(".")
        section = doc.get(table)
        if isinstance(section, dict) and key in section:
            raise ctx.error(old, f"this key moved: set {new} instead")
    pipelines = doc.get("pipelines")
    for index, pipeline in enumerate(pipelines if isinstance(pipelines, list) else []):
        source = pipeline.get("source") if isinstance(pipeline, dict) else None
        if not isinstance(source, dict):
            continue
        for (kind, key), new in SOURCE_MOVED.items():
            if source.get("type") == kind and key in source:
                raise ctx.error(f"pipelines[{index}].source.{key}",
                                f"a {kind} source does not take {key}: use {new}")
