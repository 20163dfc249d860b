"""Embed edge-runtime metadata into a .tflite flatbuffer (the reader is edge_runtime.model.metadata).

Rewriting a flatbuffer needs the full schema's object API; ai-edge-litert (a dependency of the
package) ships the generated code, and TensorFlow has the same module as a fallback.
"""

from __future__ import annotations

import flatbuffers
import numpy as np

from edge_runtime.model.flatbuffer import TFLITE_IDENTIFIER, check_tflite
from edge_runtime.model.metadata import METADATA_KEY, ModelMetadata

try:
    from ai_edge_litert import schema_py_generated as schema
except ImportError:  # pragma: no cover - only without ai-edge-litert
    from tensorflow.lite.python import schema_py_generated as schema  # type: ignore[no-redef]


def embed_metadata(model_bytes: bytes, metadata: ModelMetadata) -> bytes:
    """A copy of the model with `metadata` stored under METADATA_KEY (replacing any earlier one)."""
    check_tflite(model_bytes)
    model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    model.buffers = model.buffers or []
    model.metadata = model.metadata or []
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(metadata.to_json(), dtype=np.uint8)
    existing = [m for m in model.metadata if _name(m) == METADATA_KEY]
    if existing:
        model.buffers[existing[0].buffer] = buffer
    else:
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name = METADATA_KEY
        entry.buffer = len(model.buffers) - 1
        model.metadata.append(entry)
    builder = flatbuffers.Builder(len(model_bytes) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    return bytes(builder.Output())


def _name(entry: object) -> str:
    name = getattr(entry, "name", b"")
    return name.decode() if isinstance(name, bytes) else str(name)
