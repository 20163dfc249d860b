"""What every source produces (Frame) and the interface a source plugin implements."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class EndOfStream(Exception):
    """A finite source (files) has nothing more to give."""


class SourceError(RuntimeError):
    """The source is broken right now (camera gone, file unreadable); the pipeline retries it."""


@dataclass
class Frame:
    """One unit of input: an image (H x W x 3 BGR uint8) or a sensor window (rows x columns float32)."""

    data: np.ndarray
    index: int
    name: str = ""
    captured: float = field(default_factory=time.time)
    # (width, height) of the image as captured, when `data` was decoded at a reduced size
    full_size: tuple[int, int] | None = None

    @property
    def width(self) -> int:
        if self.full_size:
            return self.full_size[0]
        return int(self.data.shape[1]) if self.data.ndim >= 2 else int(self.data.shape[0])

    @property
    def height(self) -> int:
        return self.full_size[1] if self.full_size else int(self.data.shape[0])


@dataclass(frozen=True)
class SourceContext:
    """What a source may need besides its own options."""

    base_dir: Path  # relative paths are relative to the config file
    pipeline: str
    mqtt: Any = None  # the [mqtt] section (MqttConfig), for sources that subscribe
    client_id: str = "edge-runtime"  # the daemon's MQTT client id; subscribers derive theirs
    reconnect: tuple[float, float] = (1.0, 60.0)  # [retry.broker] (min_delay, max_delay), seconds
    columns: tuple[str, ...] = ()  # sensor defaults from the model's metadata / input tensor
    window: int = 0
    image_size: tuple[int, int] | None = None  # model input (width, height) for image models
    sample_rate: int = 0  # audio models: samples per second from the model's metadata

    def resolve(self, path: str) -> Path:
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else self.base_dir / candidate


class Source(ABC):
    """A plugin that reads frames. `read` blocks for at most about half a second."""

    #: Live sources (camera, mqtt) drop stale frames when inference is slower; file sources wait.
    live: bool = False
    #: Sensor sources produce windows of `columns`; image sources leave this empty.
    columns: tuple[str, ...] = ()

    def open(self) -> None:
        """Acquire the device or file; raise SourceError when that fails."""

    @abstractmethod
    def read(self) -> Frame | None:
        """The next frame, None if none arrived in time, EndOfStream when a file source is done."""

    def close(self) -> None:
        """Release the device or file; safe to call twice."""

    def input_errors(self) -> int:
        """Bad inputs skipped so far (unreadable images, garbage payloads)."""
        return 0
