"""Reading .tflite files: metadata round trip, corrupt files, runtime selection."""

from __future__ import annotations

import pytest

from conftest import DIGITS_INT8, VIBRATION_MODEL
from converters.metadata_writer import embed_metadata
from edge_runtime.model.flatbuffer import FlatbufferError, read_metadata_entries
from edge_runtime.model.metadata import MetadataError, ModelMetadata, read_model_metadata
from edge_runtime.model.runtime import RuntimeUnavailable, select_runtime
from edge_runtime.model.tflite_model import ModelLoadError, TfliteModel


def test_metadata_round_trips_and_replaces():
    original = DIGITS_INT8.read_bytes()
    meta = ModelMetadata(task="raw", labels=("a", "b"), preprocess={"color": "bgr"},
                         verification={"accuracy": 0.98})
    rewritten = embed_metadata(original, meta)
    assert read_model_metadata(rewritten) == meta
    again = embed_metadata(rewritten, ModelMetadata(task="classification"))
    assert read_model_metadata(again).task == "classification"
    assert list(read_metadata_entries(again)).count("edge_runtime") == 1


def test_the_model_still_runs_after_embedding(tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(embed_metadata(VIBRATION_MODEL.read_bytes(), ModelMetadata(task="raw")))
    model = TfliteModel(path, select_runtime())
    model.invoke()
    assert model.output(0).shape == (1, 3)
    assert model.metadata.task == "raw"


def test_truncated_flatbuffer_raises_a_clear_error():
    data = DIGITS_INT8.read_bytes()
    with pytest.raises(FlatbufferError):
        read_metadata_entries(data[: len(data) // 3])
    with pytest.raises(FlatbufferError, match="TFL3"):
        read_metadata_entries(b"\x00" * 64)


def test_metadata_from_a_newer_format_is_refused():
    with pytest.raises(MetadataError, match="newer"):
        ModelMetadata.from_json(b'{"format": 99}')
    with pytest.raises(MetadataError, match="not valid JSON"):
        ModelMetadata.from_json(b"{oops")


def test_model_load_errors_name_the_file(tmp_path):
    with pytest.raises(ModelLoadError, match="no such file"):
        TfliteModel(tmp_path / "absent.tflite", select_runtime())
    with pytest.raises(ModelLoadError, match="is a directory"):
        TfliteModel(tmp_path, select_runtime())


def test_runtime_selection(monkeypatch):
    assert select_runtime().name == "ai-edge-litert"
    with pytest.raises(RuntimeUnavailable, match="unknown runtime"):
        select_runtime("onnx")
    monkeypatch.setenv("EDGE_RUNTIME_BACKEND", "no-such")
    with pytest.raises(RuntimeUnavailable, match="unknown runtime 'no-such'"):
        select_runtime()
