"""Every source plugin, registered in one place: `type` key -> (options dataclass, class).

The options dataclass is validated from `[pipelines.source]` and declares what the source is
(`traits()`, base.py); the class reads the frames. Adding a source is its module plus one
loader here. A loader imports its module only when a config names that type
(plugin_registry.py): an `images` pipeline never loads OpenCV's video side, paho's source
client, pyserial or subprocess handling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from edge_runtime.plugin_registry import PluginRegistry
from edge_runtime.sources.base import Source, SourceContext, SourceOptions


@dataclass(frozen=True)
class SourcePlugin:
    options: type[SourceOptions]
    create: Callable[[Any, SourceContext], Source]


def _images() -> SourcePlugin:
    from edge_runtime.sources.images import ImagesOptions, ImagesSource
    return SourcePlugin(ImagesOptions, ImagesSource)


def _video() -> SourcePlugin:
    from edge_runtime.sources.video import VideoOptions, VideoSource
    return SourcePlugin(VideoOptions, VideoSource)


def _camera() -> SourcePlugin:
    from edge_runtime.sources.video import CameraOptions, CameraSource
    return SourcePlugin(CameraOptions, CameraSource)


def _stream() -> SourcePlugin:
    from edge_runtime.sources.stream import StreamOptions, StreamSource
    return SourcePlugin(StreamOptions, StreamSource)


def _csv() -> SourcePlugin:
    from edge_runtime.sources.csv_source import CsvOptions, CsvSource
    return SourcePlugin(CsvOptions, CsvSource)


def _mqtt() -> SourcePlugin:
    from edge_runtime.sources.mqtt_source import MqttSource, MqttSourceOptions
    return SourcePlugin(MqttSourceOptions, MqttSource)


def _serial() -> SourcePlugin:
    from edge_runtime.sources.serial_source import SerialOptions, SerialSource
    return SourcePlugin(SerialOptions, SerialSource)


def _command() -> SourcePlugin:
    from edge_runtime.sources.command_source import CommandOptions, CommandSource
    return SourcePlugin(CommandOptions, CommandSource)


SOURCES: PluginRegistry[SourcePlugin] = PluginRegistry({
    "images": _images,
    "video": _video,
    "camera": _camera,
    "stream": _stream,
    "csv": _csv,
    "mqtt": _mqtt,
    "serial": _serial,
    "command": _command,
})
