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

from edge_runtime.sources.image_header import image_size, jpeg_size


class ImageTooLarge(Exception):
    """The file's header declares more pixels than allowed: it is not decoded (a PNG "bomb")."""

    def __init__(self, size: tuple[int, int], limit: int) -> None:
        width, height = size
        super().__init__(f"{width}x{height} is {width * height / 1e6:.1f} megapixels, over "
                         f"max_pixels ({limit / 1e6:g} megapixels); not decoded")
        self.size = size

_REDUCED = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
            8: cv2.IMREAD_REDUCED_COLOR_8}
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


def read_image(path: Path, target: tuple[int, int] | None, max_pixels: int | None = None,
               ) -> tuple[np.ndarray | None, tuple[int, int]]:
    """Decode `path` as BGR; returns (image or None if unreadable, (width, height) in the file).

    `target` (model input width, height) allows a reduced JPEG decode; None decodes in full.
    `max_pixels`: ImageTooLarge, before decoding, when the header declares more pixels (a 432 KB
    PNG can declare 20000x20000: 1.2 GB decoded). A header this module cannot read leaves the
    check to OpenCV's own limit (OPENCV_IO_MAX_IMAGE_PIXELS).
    """
    try:
        data = np.fromfile(path, np.uint8)
    except OSError:
        return None, (0, 0)
    return decode_image(data, target, max_pixels)


def decode_image(data: np.ndarray, target: tuple[int, int] | None, max_pixels: int | None = None,
                 ) -> tuple[np.ndarray | None, tuple[int, int]]:
    """Like `read_image`, from the encoded bytes (a JPEG from a stream, say) as a uint8 array."""
    if data.size == 0:  # imdecode asserts on an empty buffer
        return None, (0, 0)
    if max_pixels is not None:
        declared = image_size(data)
        if declared is not None and declared[0] * declared[1] > max_pixels:
            raise ImageTooLarge(declared, max_pixels)
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
