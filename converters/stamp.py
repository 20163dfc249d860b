"""What a converted model carries for the device: task, labels, preprocessing, source, verification.

`model_metadata` builds the `ModelMetadata` that converters.metadata_writer embeds; the source is
the user's file (not an intermediate pruned or distilled copy), and the verification report of
the mode goes in once the model has passed.
"""

from __future__ import annotations

import time
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from converters.data import InputSettings
from converters.loaders import SourceModel, source_sha256
from converters.options import Options
from converters.report import ModeReport, Report
from edge_runtime.model.metadata import ModelMetadata


def converter_version() -> str:
    try:
        return importlib_metadata.version("edge-runtime")
    except importlib_metadata.PackageNotFoundError:
        import edge_runtime

        return edge_runtime.__version__


def model_metadata(options: Options, settings: InputSettings, source: SourceModel, sha256: str,
                   labels: tuple[str, ...], mode: str, io_type: str, tf_version: str,
                   verification: dict[str, Any] | None = None) -> ModelMetadata:
    audio: dict[str, Any] = {}
    if settings.columns or settings.audio is not None:
        preprocess = {k: list(v) for k, v in settings.preprocess.to_dict().items()
                      if k in ("mean", "std") and k in options.preprocess}
        sensor = ({"columns": list(settings.columns), "window": settings.sensor_window()}
                  if settings.columns else {})
        audio = settings.audio.to_dict() if settings.audio is not None else {}
    else:
        preprocess = settings.preprocess.to_dict() if len(source.input.shape) == 4 else {}
        sensor = {}
    postprocess = dict(options.postprocess)
    return ModelMetadata(
        task=options.task,
        labels=labels,
        preprocess=preprocess,
        postprocess=postprocess,
        sensor=sensor,
        audio=audio,
        source=source_doc(source, sha256, options.made_from),
        converter={"name": "edge-convert", "version": converter_version(),
                   "tensorflow": tf_version, "quantize": mode, "io_type": io_type},
        verification={"report": verification} if verification else {},
    )


def source_doc(source: SourceModel, sha256: str, made_from: tuple[Path, str] | None
               ) -> dict[str, Any]:
    doc = {"file": source.path.name, "sha256": sha256, "framework": source.framework}
    if made_from is not None:  # an intermediate file: name the user's model instead
        original, how = made_from
        doc.update(file=original.name, sha256=source_sha256(original), made_by=how)
    if source.source_layout:
        doc["layout"] = source.source_layout  # the source model's; the device feeds NHWC
    return doc


def verification_doc(entry: ModeReport, report: Report) -> dict[str, Any]:
    doc = entry.to_dict()
    doc.pop("status", None)
    doc["validation"] = {k: v for k, v in report.validation.items() if v not in (None, "")}
    doc["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return doc
