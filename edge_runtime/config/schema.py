"""The config file's schema: one frozen dataclass per section. Field types are the validation."""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from edge_runtime.config.cascade import EscalateConfig, StageConfig
from edge_runtime.config.typed import at_least

if TYPE_CHECKING:  # integration.py imports this module's checks
    from edge_runtime.config.integration import HomeAssistantConfig, PipelineObjects

_NAME = re.compile(r"[A-Za-z0-9_.-]+")  # used with fullmatch: "$" matches before a final "\n"


def topic_safe(value: str) -> str | None:
    if not _NAME.fullmatch(value):
        return f"{value!r} may only use letters, digits, '_', '-' and '.' (it is used in MQTT topics)"
    return None


def prefix_safe(value: str) -> str | None:
    parts = value.split("/")
    if not value or any(not p or not _NAME.fullmatch(p) for p in parts):
        return f"{value!r} must be topic levels of letters, digits, '_', '-', '.' separated by '/'"
    return None


def default_device_id() -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname()) or "edge"


@dataclass(frozen=True)
class DeviceConfig:
    id: str = field(default_factory=default_device_id, metadata={"check": topic_safe})


@dataclass(frozen=True)
class TlsConfig:
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False  # skip hostname verification (self-signed test brokers only)


@dataclass(frozen=True)
class MqttConfig:
    """`[mqtt]`: the broker connection (reconnect pacing is `[retry] broker`)."""

    host: str = "localhost"
    port: int = field(default=1883, metadata=at_least(1))
    topic_prefix: str = field(default="edge", metadata={"check": prefix_safe})
    qos: Literal[0, 1] = 1
    keepalive: int = field(default=30, metadata=at_least(5))
    client_id: str | None = None
    username: str | None = None
    password_file: Path | None = None  # never the password inline
    tls: TlsConfig | None = None
    max_inflight: int = field(default=100, metadata=at_least(1))  # results awaiting PUBACK

    def client_id_for(self, device_id: str) -> str:
        return self.client_id or f"edge-runtime-{device_id}"


def available_cpus() -> frozenset[int]:
    """The CPUs this process may run on (its affinity: a container or `taskset` may narrow it)."""
    if hasattr(os, "sched_getaffinity"):
        return frozenset(os.sched_getaffinity(0))
    return frozenset(range(os.cpu_count() or 1))


def _cpus_check(cpus: tuple[int, ...]) -> str | None:
    if len(set(cpus)) != len(cpus):
        return f"lists a CPU twice: {list(cpus)}"
    missing = sorted(set(cpus) - available_cpus())
    if missing:
        return (f"CPU {missing[0]} is not one this process may run on "
                f"(available: {sorted(available_cpus())})")
    return None


def _threads_check() -> dict[str, Any]:
    minimum = at_least(1)["check"]
    return {"check": lambda v: None if v == "auto" else minimum(v)}


@dataclass(frozen=True)
class OutboxConfig:
    """`[outbox]`: the durable queue of undelivered results (publishing/outbox.py)."""

    # Default: $STATE_DIRECTORY/outbox.sqlite under systemd, else <config stem>.outbox.sqlite next
    # to the config file.
    path: Path | None = None
    max_messages: int = field(default=100_000, metadata=at_least(1))
    max_bytes: int = field(default=64 * 1024 * 1024, metadata=at_least(1024))
    sync: Literal["full", "normal"] = "full"  # full: survives power loss; normal: crashes only


@dataclass(frozen=True)
class StatsConfig:
    """`[stats]`: the retained `<prefix>/<device>/stats` message (publishing/stats.py)."""

    interval: float = field(default=30.0, metadata=at_least(1.0))  # seconds between two


@dataclass(frozen=True)
class BackoffConfig:
    """Exponential backoff with full jitter: the n-th retry waits up to min_delay * 2**n, capped."""

    min_delay: float = field(default=1.0, metadata=at_least(0.1))
    max_delay: float = field(default=60.0, metadata=at_least(0.1))

    def cross_check(self) -> tuple[str, str] | None:
        if self.min_delay > self.max_delay:
            return "max_delay", f"must be >= min_delay ({self.min_delay!r}), got {self.max_delay!r}"
        return None


@dataclass(frozen=True)
class RetryConfig:
    """`[retry]`: every retry the daemon makes, each an exponential backoff of the same shape."""

    # reconnecting to the broker, for publishing and for mqtt sources alike
    broker: BackoffConfig = field(default_factory=lambda: BackoffConfig(1.0, 60.0))
    # reopening a source that failed (camera unplugged, file missing, stream down)
    source: BackoffConfig = field(default_factory=lambda: BackoffConfig(1.0, 30.0))
    # reloading a model after its inference failed
    model: BackoffConfig = field(default_factory=lambda: BackoffConfig(1.0, 60.0))


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _log_level(value: str) -> str | None:
    if value.upper() in LOG_LEVELS:
        return None
    return f"must be one of {', '.join(level.lower() for level in LOG_LEVELS)}, got {value!r}"


@dataclass(frozen=True)
class LoggingConfig:
    """`[logging]`; `edge-runtime --log-level` overrides it."""

    level: str = field(default="info", metadata={"check": _log_level})  # any case


@dataclass(frozen=True)
class ModelConfig:
    path: Path
    # "auto": the pipeline times 1..cores at start and keeps the fastest (pipeline/auto_threads.py)
    threads: int | Literal["auto"] = field(default=2, metadata=_threads_check())
    runtime: Literal["auto", "ai-edge-litert", "tflite-runtime"] = "auto"
    # "edgetpu" or a delegate library path; unavailable -> CPU (logged, shown in stats)
    delegate: str | None = None
    # CPUs of the pipeline's own: its inference thread (and the interpreter's workers) run only
    # there, and every other thread of the daemon runs on the rest (supervision/cpus.py)
    cpus: tuple[int, ...] = field(default=(), metadata={"check": _cpus_check})


@dataclass(frozen=True)
class PreprocessConfig:
    """Overrides for what the model's metadata says; unset keys keep the metadata's value."""

    color: Literal["rgb", "bgr", "gray"] | None = None
    resize: Literal["stretch", "letterbox", "center-crop", "letterbox-mediapipe"] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    layout: Literal["nhwc", "nchw"] | None = None
    interpolation: Literal["linear", "area", "nearest"] | None = None
    # Audio models (preprocessing/audio.py): the samples as they are, or log-mel features with
    # these parameters (lengths in samples, frequencies in Hz); checked against each other and
    # the model when the pipeline is assembled.
    features: Literal["waveform", "log-mel"] | None = None
    n_fft: int | None = field(default=None, metadata=at_least(1))
    win_length: int | None = field(default=None, metadata=at_least(1))
    hop_length: int | None = field(default=None, metadata=at_least(1))
    n_mels: int | None = field(default=None, metadata=at_least(1))
    fmin: float | None = field(default=None, metadata=at_least(0))
    fmax: float | None = field(default=None, metadata=at_least(0))
    power: Literal[1, 2] | None = None
    log_offset: float | None = None

    def overrides(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def _fraction(value: float) -> str | None:
    return None if 0.0 <= value <= 1.0 else f"must be between 0 and 1, got {value!r}"


@dataclass(frozen=True)
class GateConfig:
    """`[pipelines.gate]`: when to run inference at all (pipeline/gate.py)."""

    motion: bool = False
    # Fraction of the downscaled frame's pixels that must have changed since the last inferred
    # frame for a new frame to be inferred.
    motion_threshold: float = field(default=0.01, metadata={"check": _fraction})
    # A pixel counts as changed when its gray level moved by more than this (0-255): sensor noise
    # and JPEG artifacts stay below it.
    pixel_threshold: int = field(default=25, metadata=at_least(0))
    max_interval: float = field(default=10.0, metadata=at_least(0))  # heartbeat inference; 0 = none


@dataclass(frozen=True)
class PublishConfig:
    """`[pipelines.publish]`: which results are published (pipeline/publish_policy.py)."""

    mode: Literal["every", "change"] = "every"
    min_interval: float = field(default=0.0, metadata=at_least(0))  # rate cap; 0 = none
    # change mode: publish an unchanged result after this long anyway (0 = never)
    max_interval: float = field(default=60.0, metadata=at_least(0))

    def cross_check(self) -> tuple[str, str] | None:
        if self.mode == "change" and 0 < self.max_interval < self.min_interval:
            return "max_interval", (f"must be 0 or >= min_interval ({self.min_interval!r}), "
                                    f"got {self.max_interval!r}")
        return None


@dataclass(frozen=True)
class PipelineConfig:
    name: str
    source: Any  # the options dataclass of the source plugin named by source.type
    model: ModelConfig
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    # Validated against the task plugin once the model (and so the default task) is known.
    postprocess: dict[str, Any] = field(default_factory=dict)
    index: int = 0  # position in the file, for error messages
    gate: GateConfig = field(default_factory=GateConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)
    stages: tuple[StageConfig, ...] = ()  # models run on crops of the detections (cascade.py)
    escalate: EscalateConfig | None = None  # a bigger model when this one is unsure
    objects: PipelineObjects | None = None  # tracker, zones, snapshots (config/integration.py)


@dataclass(frozen=True)
class AppConfig:
    file: str
    base_dir: Path  # the config file's folder: relative paths are relative to it
    device: DeviceConfig
    mqtt: MqttConfig
    pipelines: tuple[PipelineConfig, ...]
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    homeassistant: HomeAssistantConfig | None = None  # [homeassistant] (config/integration.py)

    @property
    def log_level(self) -> str:
        return self.logging.level.upper()
