"""The metadata edge-runtime embeds in a .tflite file, and reading it back without TensorFlow.

The converter stores one JSON document (UTF-8) in a buffer of the model flatbuffer and names it in
`Model.metadata` under METADATA_KEY. The format is documented in docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from edge_runtime.model.flatbuffer import read_metadata_entries

METADATA_KEY = "edge_runtime"
FORMAT_VERSION = 1


class MetadataError(ValueError):
    """The embedded metadata exists but cannot be used."""


@dataclass(frozen=True)
class ModelMetadata:
    """What the converter recorded about a model: everything the device needs to run it."""

    task: str | None = None
    labels: tuple[str, ...] = ()
    # Keys as in the config's [pipelines.preprocess]: color, resize, mean, std, layout.
    preprocess: dict[str, Any] = field(default_factory=dict)
    # Task options, e.g. detection format, top_k, threshold.
    postprocess: dict[str, Any] = field(default_factory=dict)
    # Sensor models: the columns of one row and the window length, e.g. {"columns": [...], "window": 32}.
    sensor: dict[str, Any] = field(default_factory=dict)
    # Audio models: sample rate, window (samples) and features, e.g. {"sample_rate": 16000,
    # "window": 16000, "features": "log-mel", "n_mels": 40, ...} (preprocessing/audio.py).
    audio: dict[str, Any] = field(default_factory=dict)
    # Provenance and verification: source model sha256, converter version, report.
    source: dict[str, Any] = field(default_factory=dict)
    converter: dict[str, Any] = field(default_factory=dict)
    verification: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"format": FORMAT_VERSION}
        if self.task:
            doc["task"] = self.task
        if self.labels:
            doc["labels"] = list(self.labels)
        for name in ("preprocess", "postprocess", "sensor", "audio", "source", "converter", "verification"):
            value = getattr(self, name)
            if value:
                doc[name] = value
        return doc

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ModelMetadata:
        if not isinstance(doc, dict):
            raise MetadataError("metadata is not a JSON object")
        version = doc.get("format", FORMAT_VERSION)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise MetadataError(
                f"metadata format {version!r} is newer than this edge-runtime understands "
                f"({FORMAT_VERSION}); upgrade edge-runtime"
            )
        labels = doc.get("labels", [])
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise MetadataError("metadata 'labels' must be a list of strings")

        def section(name: str) -> dict[str, Any]:
            value = doc.get(name, {})
            if not isinstance(value, dict):
                raise MetadataError(f"metadata '{name}' must be an object")
            return value

        task = doc.get("task")
        if task is not None and not isinstance(task, str):
            raise MetadataError("metadata 'task' must be a string")
        return cls(
            task=task,
            labels=tuple(labels),
            preprocess=section("preprocess"),
            postprocess=section("postprocess"),
            sensor=section("sensor"),
            audio=section("audio"),
            source=section("source"),
            converter=section("converter"),
            verification=section("verification"),
        )

    @classmethod
    def from_json(cls, data: bytes) -> ModelMetadata:
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MetadataError(f"embedded metadata is not valid JSON ({exc})") from exc
        return cls.from_dict(doc)


def read_model_metadata(model_bytes: bytes) -> ModelMetadata | None:
    """The edge-runtime metadata embedded in a model, or None when the model has none."""
    entry = read_metadata_entries(model_bytes).get(METADATA_KEY)
    return None if entry is None else ModelMetadata.from_json(entry)
