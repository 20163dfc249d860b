"""Byte streams into units: JPEGs from an MJPEG stream, raw frames, audio samples, text lines.

Each parser is fed chunks of any size (as a pipe or a serial port delivers them) and returns the
complete units they finish; a unit split across chunks is kept until its end arrives. Garbage
between units (a multipart boundary, line noise) is skipped, and no buffer grows without bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

MAX_JPEG_BYTES = 16 << 20  # a "JPEG" longer than this is garbage: skip to the next start marker
MAX_LINE_BYTES = 4096  # a "line" longer than this is garbage: dropped up to the next newline

_FALSE_START = -1

PixelFormat = Literal["bgr24", "rgb24", "gray", "yuv420p"]


class MjpegSplitter:
    """Concatenated JPEGs (rpicam-vid --codec mjpeg, ffmpeg -f mjpeg, multipart HTTP bodies).

    A JPEG ends at the EOI marker that follows its scan data. Segments before the scan are skipped
    by their length fields, so an EOI inside an embedded thumbnail (APP1/EXIF) does not end it.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0  # where the marker walk of the current JPEG resumes
        self._in_scan = False
        self.skipped = 0  # bytes of garbage dropped

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buf += chunk
        out: list[bytes] = []
        while True:
            if not self._sync():
                return out
            end = self._find_end()
            if end == _FALSE_START:
                continue
            if end is None:
                if len(self._buf) > MAX_JPEG_BYTES:  # no end in sight: drop this start marker
                    self._drop(2)
                    continue
                return out
            out.append(bytes(self._buf[:end]))
            del self._buf[:end]
            self._pos, self._in_scan = 0, False

    def _drop(self, count: int) -> None:
        self.skipped += count
        del self._buf[:count]
        self._pos, self._in_scan = 0, False

    def _sync(self) -> bool:
        """Make the buffer start at an SOI marker; False if more bytes are needed."""
        if self._buf[:2] == b"\xff\xd8":
            return True
        start = self._buf.find(b"\xff\xd8")
        if start < 0:
            keep = 1 if self._buf[-1:] == b"\xff" else 0
            self._drop(len(self._buf) - keep)
            return False
        self._drop(start)
        return True

    def _find_end(self) -> int | None:
        """Offset just past the EOI, None if not there yet, _FALSE_START if the start was bad."""
        return self._walk_segments(self._pos or 2)

    def _walk_segments(self, pos: int) -> int | None:
        buf = self._buf
        while not self._in_scan:
            if pos + 4 > len(buf):
                self._pos = pos
                return None
            if buf[pos] != 0xFF:
                self._drop(2)  # not a marker where one must be: a false start
                return _FALSE_START
            marker = buf[pos + 1]
            if marker == 0xFF:
                pos += 1
                continue
            if marker == 0xD9:  # EOI before any scan: an empty image, take it as is
                return pos + 2
            if 0xD0 <= marker <= 0xD7 or marker == 0x01:
                pos += 2
                continue
            length = (buf[pos + 2] << 8) | buf[pos + 3]
            if marker < 0xC0 or length < 2:  # no such marker before a scan
                self._drop(2)
                return _FALSE_START
            pos += 2 + length
            if marker == 0xDA:
                self._in_scan = True
        while True:  # entropy-coded data: 0xFF is stuffed as FF00; FFD0-FFD7 are restart markers
            pos = buf.find(b"\xff", pos)
            if pos < 0 or pos + 1 >= len(buf):
                self._pos = len(buf) - 1 if pos >= 0 else len(buf)
                return None
            marker = buf[pos + 1]
            if marker == 0xD9:
                return pos + 2
            if marker == 0x00 or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
                pos += 1 if marker == 0xFF else 2
                continue
            # Another segment after the scan (progressive JPEGs have several scans).
            self._in_scan = False
            return self._walk_segments(pos)


@dataclass(frozen=True)
class RawLayout:
    """Uncompressed frames of `width` x `height` in `pixel_format`."""

    width: int
    height: int
    pixel_format: PixelFormat

    @property
    def frame_bytes(self) -> int:
        pixels = self.width * self.height
        if self.pixel_format == "yuv420p":
            return pixels + 2 * ((self.width + 1) // 2) * ((self.height + 1) // 2)
        return pixels * (1 if self.pixel_format == "gray" else 3)

    def to_bgr(self, data: bytes) -> np.ndarray:
        """One frame's bytes as an H x W x 3 BGR image."""
        flat = np.frombuffer(data, np.uint8)
        w, h = self.width, self.height
        if self.pixel_format == "bgr24":
            return flat.reshape(h, w, 3).copy()
        if self.pixel_format == "rgb24":
            return cv2.cvtColor(flat.reshape(h, w, 3), cv2.COLOR_RGB2BGR)
        if self.pixel_format == "gray":
            return cv2.cvtColor(flat.reshape(h, w), cv2.COLOR_GRAY2BGR)
        if w % 2 or h % 2:  # OpenCV's I420 conversion needs even sizes
            y = flat[: w * h].reshape(h, w)
            return cv2.cvtColor(y, cv2.COLOR_GRAY2BGR)
        return cv2.cvtColor(flat.reshape(h * 3 // 2, w), cv2.COLOR_YUV2BGR_I420)


class FixedChunks:
    """A stream cut into pieces of `size` bytes (raw video frames, blocks of audio samples)."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("chunk size must be positive")
        self.size = size
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buf += chunk
        count = len(self._buf) // self.size
        if not count:
            return []
        cut = count * self.size
        pieces = [bytes(self._buf[i:i + self.size]) for i in range(0, cut, self.size)]
        del self._buf[:cut]
        return pieces


class LineSplitter:
    """Text lines (\\n or \\r\\n); a line longer than MAX_LINE_BYTES is dropped and counted."""

    def __init__(self, max_bytes: int = MAX_LINE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._buf = bytearray()
        self._discarding = False
        self.overlong = 0

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buf += chunk
        lines: list[bytes] = []
        while True:
            end = self._buf.find(b"\n")
            if end < 0:
                if len(self._buf) > self.max_bytes:
                    if not self._discarding:
                        self.overlong += 1
                    self._discarding = True
                    self._buf.clear()
                return lines
            line = bytes(self._buf[:end]).rstrip(b"\r")
            del self._buf[:end + 1]
            if self._discarding:  # the tail of an overlong line
                self._discarding = False
                continue
            if len(line) > self.max_bytes:
                self.overlong += 1
                continue
            lines.append(line)

    def reset(self) -> None:
        """Forget a partial line (the port was reopened: its start is gone)."""
        self._buf.clear()
        self._discarding = False


class SampleWindows:
    """Interleaved s16le audio into windows of `window` samples x `channels`, float32 in [-1, 1).

    A window is emitted every `stride` samples once `window` samples have arrived; a sample split
    across chunks is kept until its other bytes arrive.
    """

    def __init__(self, channels: int, window: int, stride: int) -> None:
        if channels < 1 or window < 1 or stride < 1:
            raise ValueError("channels, window and stride must be positive")
        self.channels = channels
        self.window = window
        self.stride = stride
        self._partial = b""
        self._samples = np.zeros((0, channels), np.float32)
        self._next_end = window  # the sample count at which the next window is complete

    def feed(self, chunk: bytes) -> list[np.ndarray]:
        data = self._partial + chunk
        frame_bytes = 2 * self.channels
        usable = len(data) - len(data) % frame_bytes
        self._partial = data[usable:]
        if not usable:
            return []
        new = np.frombuffer(data[:usable], "<i2").astype(np.float32).reshape(-1, self.channels)
        new *= 1.0 / 32768.0
        samples = np.concatenate((self._samples, new)) if len(self._samples) else new
        windows: list[np.ndarray] = []
        while len(samples) >= self._next_end:
            windows.append(samples[self._next_end - self.window:self._next_end].copy())
            self._next_end += self.stride
        # Keep what the next window still needs.
        drop = max(0, min(len(samples), self._next_end - self.window))
        self._samples = samples[drop:]
        self._next_end -= drop
        return windows
