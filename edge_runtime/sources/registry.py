"""Every source plugin, registered in one place: `type` key -> (options dataclass, class).

The options dataclass is validated from `[pipelines.source]` and declares what the source is
(`traits()`, base.py); the class reads the frames. Adding a source is its module plus one line
here naming its module, options and class. The module is imported only when a config names
that type (plugin_registry.py): an `images` pipeline never loads OpenCV's video side, paho's
source client, pyserial or subprocess handling.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any, Callable

from edge_runtime.plugin_registry import PluginRegistry
from edge_runtime.sources.base import Source, SourceContext, SourceOptions


@dataclass(frozen=True)
class SourcePlugin:
    options: type[SourceOptions]
    create: Callable[[Any, SourceContext], Source]


def _plugin(module: str, options: str, source: str) -> Callable[[], SourcePlugin]:
    """The loader of the source in `edge_runtime.sources.<module>`: its options and class."""
    def load() -> SourcePlugin:
        found = import_module(f"edge_runtime.sources.{module}")
        return SourcePlugin(getattr(found, options), getattr(found, source))
    return load


SOURCES: PluginRegistry[SourcePlugin] = PluginRegistry({
    "images": _plugin("images", "ImagesOptions", "ImagesSource"),
    "video": _plugin("video", "VideoOptions", "VideoSource"),
    "camera": _plugin("video", "CameraOptions", "CameraSource"),
    "stream": _plugin("stream", "StreamOptions", "StreamSource"),
    "csv": _plugin("csv_source", "CsvOptions", "CsvSource"),
    "mqtt": _plugin("mqtt_source", "MqttSourceOptions", "MqttSource"),
    "serial": _plugin("serial_source", "SerialOptions", "SerialSource"),
    "command": _plugin("command_source", "CommandOptions", "CommandSource"),
})
