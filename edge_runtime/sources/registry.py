"""Every source plugin, registered in one place: `type` key -> (options dataclass, class).

The options dataclass is validated from `[pipelines.source]` and declares what the source is
(`traits()`, base.py); the class reads the frames. Adding a source is its module plus one line
here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from edge_runtime.sources.base import Source, SourceContext, SourceOptions
from edge_runtime.sources.command_source import CommandOptions, CommandSource
from edge_runtime.sources.csv_source import CsvOptions, CsvSource
from edge_runtime.sources.images import ImagesOptions, ImagesSource
from edge_runtime.sources.mqtt_source import MqttSource, MqttSourceOptions
from edge_runtime.sources.serial_source import SerialOptions, SerialSource
from edge_runtime.sources.stream import StreamOptions, StreamSource
from edge_runtime.sources.video import CameraOptions, CameraSource, VideoOptions, VideoSource


@dataclass(frozen=True)
class SourcePlugin:
    options: type[SourceOptions]
    create: Callable[[Any, SourceContext], Source]


SOURCES: dict[str, SourcePlugin] = {
    "images": SourcePlugin(ImagesOptions, ImagesSource),
    "video": SourcePlugin(VideoOptions, VideoSource),
    "camera": SourcePlugin(CameraOptions, CameraSource),
    "stream": SourcePlugin(StreamOptions, StreamSource),
    "csv": SourcePlugin(CsvOptions, CsvSource),
    "mqtt": SourcePlugin(MqttSourceOptions, MqttSource),
    "serial": SourcePlugin(SerialOptions, SerialSource),
    "command": SourcePlugin(CommandOptions, CommandSource),
}
