"""Just enough of a FlatBuffers reader to find the metadata section of a .tflite file.

The daemon must not import TensorFlow, and the tflite-runtime wheel ships no schema code, so the
few fields we need (Model.buffers, Model.metadata) are read here directly from the wire format.
"""

from __future__ import annotations

import struct

TFLITE_IDENTIFIER = b"TFL3"

# Field numbers in tensorflow/compiler/mlir/lite/schema/schema.fbs
_MODEL_BUFFERS = 4
_MODEL_METADATA = 6
_BUFFER_DATA = 0
_BUFFER_OFFSET = 1
_BUFFER_SIZE = 2
_METADATA_NAME = 0
_METADATA_BUFFER = 1


class FlatbufferError(ValueError):
    """The bytes are not a well-formed TFLite flatbuffer."""


class _Table:
    def __init__(self, buf: bytes, pos: int) -> None:
        self.buf = buf
        self.pos = pos
        vtable = pos - _i32(buf, pos)
        self._vtable = vtable
        self._vtable_size = _u16(buf, vtable)

    def _field(self, index: int) -> int:
        """Absolute position of a field's value, or 0 when the field is absent."""
        slot = 4 + 2 * index
        if slot >= self._vtable_size:
            return 0
        offset = _u16(self.buf, self._vtable + slot)
        return self.pos + offset if offset else 0

    def uint(self, index: int, fmt: str = "<I") -> int:
        at = self._field(index)
        return struct.unpack_from(fmt, self.buf, at)[0] if at else 0

    def _indirect(self, index: int) -> int:
        at = self._field(index)
        return at + _u32(self.buf, at) if at else 0

    def string(self, index: int) -> str:
        at = self._indirect(index)
        if not at:
            return ""
        length = _u32(self.buf, at)
        return self.buf[at + 4 : at + 4 + length].decode("utf-8", errors="replace")

    def bytes_vector(self, index: int) -> bytes:
        at = self._indirect(index)
        if not at:
            return b""
        length = _u32(self.buf, at)
        return self.buf[at + 4 : at + 4 + length]

    def tables(self, index: int) -> list[_Table]:
        at = self._indirect(index)
        if not at:
            return []
        count = _u32(self.buf, at)
        items = []
        for i in range(count):
            element = at + 4 + 4 * i
            items.append(_Table(self.buf, element + _u32(self.buf, element)))
        return items


def _u16(buf: bytes, at: int) -> int:
    return struct.unpack_from("<H", buf, at)[0]


def _u32(buf: bytes, at: int) -> int:
    return struct.unpack_from("<I", buf, at)[0]


def _i32(buf: bytes, at: int) -> int:
    return struct.unpack_from("<i", buf, at)[0]


def check_tflite(buf: bytes) -> None:
    """Raise FlatbufferError unless `buf` starts like a TFLite model."""
    if len(buf) < 8 or buf[4:8] != TFLITE_IDENTIFIER:
        raise FlatbufferError("not a TFLite model (no 'TFL3' file identifier)")


def read_metadata_entries(buf: bytes) -> dict[str, bytes]:
    """Map each entry of Model.metadata to the bytes of the buffer it names."""
    check_tflite(buf)
    try:
        model = _Table(buf, _u32(buf, 0))
        buffers = model.tables(_MODEL_BUFFERS)
        entries: dict[str, bytes] = {}
        for meta in model.tables(_MODEL_METADATA):
            index = meta.uint(_METADATA_BUFFER)
            if index >= len(buffers):
                continue
            buffer = buffers[index]
            data = buffer.bytes_vector(_BUFFER_DATA)
            offset = buffer.uint(_BUFFER_OFFSET, "<Q")
            if not data and offset > 1:
                # Models over 2 GB keep buffer data after the flatbuffer, addressed from file start.
                data = buf[offset : offset + buffer.uint(_BUFFER_SIZE, "<Q")]
            entries[meta.string(_METADATA_NAME)] = bytes(data)
        return entries
    except (struct.error, IndexError) as exc:
        raise FlatbufferError(f"truncated or corrupt TFLite flatbuffer ({exc})") from exc
