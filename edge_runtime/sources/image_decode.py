"""Decoding image files, at a reduced size when the model needs far fewer pixels than a JPEG has.

libjpeg can decode straight to 1/2, 1/4 or 1/8 size by scaling the DCT (OpenCV's
IMREAD_REDUCED_COLOR_N): a 640x480 camera JPEG for a 224x224 model decodes about twice as fast at
320x240, and the DCT scaling is a proper anti-aliased downscale. The factor is chosen per file
from its header so that the decoded image is never smaller than the model input in either
dimension; other formats (PNG, BMP, ...) are always decoded at full size because OpenCV would
decode them fully and then resize.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

_REDUCED = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
            8: cv2.IMREAD_REDUCED_COLOR_8}
# Start-of-frame markers (baseline, progressive, ...); C4 (DHT), C8 (JPG) and CC (DAC) are not.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_NO_LENGTH = frozenset(range(0xD0, 0xDA)) | {0x01}  # RSTn, SOI, EOI, TEM: no length field


def jpeg_size(data: bytes | np.ndarray) -> tuple[int, int] | None:
    """(width, height) from a JPEG's start-of-frame header; None if `data` is no JPEG."""
    buf = memoryview(data).cast("B") if isinstance(data, np.ndarray) else memoryview(data)
    if len(buf) < 4 or buf[0] != 0xFF or buf[1] != 0xD8:
        return None
    pos = 2
    while pos + 4 <= len(buf):
        if buf[pos] != 0xFF:
            return None
        marker = buf[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _NO_LENGTH:
            pos += 2
            continue
        length = (buf[pos + 2] << 8) | buf[pos + 3]
        if marker in _SOF_MARKERS:
            if pos + 9 > len(buf):
                return None
            height = (buf[pos + 5] << 8) | buf[pos + 6]
            width = (buf[pos + 7] << 8) | buf[pos + 8]
            return (width, height) if width and height else None
        if marker == 0xDA:  # start of scan before any frame header: malformed
            return None
        pos += 2 + length
    return None


def reduction_factor(size: tuple[int, int], target: tuple[int, int]) -> int:
    """The largest of 8, 4, 2 that keeps `size` at least `target` in both dimensions, else 1."""
    width, height = size
    target_w, target_h = target
    if target_w <= 0 or target_h <= 0:
        return 1
    for factor in (8, 4, 2):
        # libjpeg rounds reduced sizes up
        if -(-width // factor) >= target_w and -(-height // factor) >= target_h:
            return factor
    return 1


def read_image(path: Path, target: tuple[int, int] | None) -> tuple[np.ndarray | None, tuple[int, int]]:
    """Decode `path` as BGR; returns (image or None if unreadable, (width, height) in the file).

    `target` (model input width, height) allows a reduced JPEG decode; None decodes in full.
    """
    try:
        data = np.fromfile(path, np.uint8)
    except OSError:
        return None, (0, 0)
    if data.size == 0:  # imdecode asserts on an empty buffer
        return None, (0, 0)
    size = jpeg_size(data) if target else None
    factor = reduction_factor(size, target) if size and target else 1
    try:
        image = cv2.imdecode(data, _REDUCED[factor] if factor > 1 else cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is None:
        return None, (0, 0)
    decoded = (image.shape[1], image.shape[0])
    if factor == 1 or size is None:
        return image, decoded
    width, height = size
    if decoded == (-(-height // factor), -(-width // factor)) != (-(-width // factor),
                                                                  -(-height // factor)):
        width, height = height, width  # OpenCV applied an EXIF rotation
    return image, (width, height)
