"""Every source plugin, registered in one place: `type` key -> (options dataclass, class)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from edge_runtime.sources.base import Source, SourceContext
from edge_runtime.sources.csv_source import CsvOptions, CsvSource
from edge_runtime.sources.images import ImagesOptions, ImagesSource
from edge_runtime.sources.mqtt_source import MqttSource, MqttSourceOptions
from edge_runtime.sources.serial_source import SerialOptions, SerialSource
from edge_runtime.sources.video import CameraOptions, CameraSource, VideoOptions, VideoSource


@dataclass(frozen=True)
class SourcePlugin:
    options: type
    create: Callable[[Any, SourceContext], Source]
    sensor: bool = False  # produces windows of sensor values rather than images


SOURCES: dict[str, SourcePlugin] = {
    "images": SourcePlugin(ImagesOptions, ImagesSource),
    "video": SourcePlugin(VideoOptions, VideoSource),
    "camera": SourcePlugin(CameraOptions, CameraSource),
    "csv": SourcePlugin(CsvOptions, CsvSource, sensor=True),
    "mqtt": SourcePlugin(MqttSourceOptions, MqttSource, sensor=True),
    "serial": SourcePlugin(SerialOptions, SerialSource, sensor=True),
}
