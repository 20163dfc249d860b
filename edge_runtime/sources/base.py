"""The source plugin contract: what a source is (SourceTraits, declared by its options), the
interface it implements (Source) and what it produces (Frame).

A source plugin is an options dataclass plus a class, registered in one line in registry.py. The
options declare, through `traits()`, what the pipeline needs to know before anything is opened:
the kind of frames (images or windows of values), whether the source is live and how the pipeline
paces it. The core asks `traits()`; it never inspects a source's options or its frames.
"""

from __future__ import annotations

import enum
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

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


class Kind(enum.Enum):
    """What a source's frames hold: this picks the preprocessing and the payload's source fields."""

    IMAGE = "image"  # H x W x 3 BGR uint8 images
    SENSOR = "sensor"  # windows of rows x columns float32 values
    AUDIO = "audio"  # windows of samples x channels float32 in [-1, 1), at `sample_rate`

    @property
    def windowed(self) -> bool:
        """Windows of values (a sensor-like kind), not images."""
        return self is not Kind.IMAGE


@dataclass(frozen=True)
class SourceTraits:
    """What a source is, declared by its options before it is created or opened."""

    kind: Kind
    #: Live sources (camera, mqtt, a process) drop stale frames when inference is slower (the
    #: FrameSlot keeps the newest); file sources are waited for, so none of their frames is lost.
    live: bool
    #: Frames per second the pipeline takes at most (the source thread paces); 0: as the source
    #: gives them. A source that paces itself (csv `rate`) says 0 here.
    max_fps: float = 0.0
    #: Windowed kinds: the value names and window length the config sets (empty / 0: from the
    #: model's metadata or input shape).
    columns: tuple[str, ...] = ()
    window: int = 0
    #: Kind.AUDIO: samples per second the config sets (0: from the model's metadata).
    sample_rate: int = 0


class SourceOptions(Protocol):
    """A source plugin's options dataclass (validated from `[pipelines.source]`)."""

    type: str

    def traits(self) -> SourceTraits:
        """What a source built from these options is."""
        ...


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
    """A plugin that reads frames. `read` blocks for at most about half a second.

    Frames match the traits its options declare: images for Kind.IMAGE, windows of
    `len(columns)` values for windowed kinds.
    """

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

    def preflight(self) -> tuple[str, str] | None:
        """What `edge-runtime check` can tell about a live source without opening it (the running
        service may hold the device): None, or (its option under `source`, what is wrong), such
        as a program that is not installed."""
        return None
