"""Image dimensions from a file's first bytes, without decoding it.

A compressed image can declare far more pixels than its size on disk suggests (a 432 KB PNG of
20000x20000 decodes to 1.2 GB). The images source reads the header first and refuses an image over
its pixel limit before OpenCV allocates anything. Covers the formats the images source lists:
JPEG, PNG, BMP, WebP, TIFF, PGM/PPM (and GIF); anything else gives None.
"""

from __future__ import annotations

import re

import numpy as np

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


def _u16(buf: memoryview, pos: int, little: bool) -> int:
    a, b = buf[pos], buf[pos + 1]
    return a | (b << 8) if little else (a << 8) | b


def _u32(buf: memoryview, pos: int, little: bool) -> int:
    return int.from_bytes(bytes(buf[pos:pos + 4]), "little" if little else "big")


def png_size(buf: memoryview) -> tuple[int, int] | None:
    # signature (8), IHDR length (4), "IHDR" (4), width (4), height (4)
    if len(buf) < 24 or bytes(buf[:8]) != b"\x89PNG\r\n\x1a\n" or bytes(buf[12:16]) != b"IHDR":
        return None
    return _u32(buf, 16, False), _u32(buf, 20, False)


def bmp_size(buf: memoryview) -> tuple[int, int] | None:
    if len(buf) < 26 or bytes(buf[:2]) != b"BM":
        return None
    if _u32(buf, 14, True) == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        return _u16(buf, 18, True), _u16(buf, 20, True)
    width = int.from_bytes(bytes(buf[18:22]), "little", signed=True)
    height = int.from_bytes(bytes(buf[22:26]), "little", signed=True)  # negative: top-down
    return abs(width), abs(height)


def gif_size(buf: memoryview) -> tuple[int, int] | None:
    if len(buf) < 10 or bytes(buf[:4]) != b"GIF8":
        return None
    return _u16(buf, 6, True), _u16(buf, 8, True)


def webp_size(buf: memoryview) -> tuple[int, int] | None:
    if len(buf) < 30 or bytes(buf[:4]) != b"RIFF" or bytes(buf[8:12]) != b"WEBP":
        return None
    chunk = bytes(buf[12:16])
    if chunk == b"VP8 ":  # lossy: frame tag (3), start code (3), 14-bit width and height
        return _u16(buf, 26, True) & 0x3FFF, _u16(buf, 28, True) & 0x3FFF
    if chunk == b"VP8L":  # lossless: signature 0x2f, then 14-bit width-1, 14-bit height-1
        bits = _u32(buf, 21, True)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":  # extended: 24-bit canvas width-1 and height-1
        width = int.from_bytes(bytes(buf[24:27]), "little") + 1
        height = int.from_bytes(bytes(buf[27:30]), "little") + 1
        return width, height
    return None


def tiff_size(buf: memoryview) -> tuple[int, int] | None:
    """Width and length of the first image (IFD) of a classic TIFF."""
    if len(buf) < 8 or bytes(buf[:4]) not in (b"II*\x00", b"MM\x00*"):
        return None
    little = buf[0] == 0x49
    ifd = _u32(buf, 4, little)
    if ifd + 2 > len(buf):
        return None
    found: dict[int, int] = {}
    for i in range(_u16(buf, ifd, little)):
        entry = ifd + 2 + 12 * i
        if entry + 12 > len(buf):
            break
        tag, kind = _u16(buf, entry, little), _u16(buf, entry + 2, little)
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT (3) or LONG (4)
            found[tag] = _u16(buf, entry + 8, little) if kind == 3 else _u32(buf, entry + 8, little)
    if 256 in found and 257 in found:
        return found[256], found[257]
    return None


_PNM = re.compile(rb"P[1-7](?:\s+|#[^\n]*\n)+(\d+)(?:\s+|#[^\n]*\n)+(\d+)")


def pnm_size(buf: memoryview) -> tuple[int, int] | None:
    match = _PNM.match(bytes(buf[:512]))
    return (int(match[1]), int(match[2])) if match else None


def image_size(data: bytes | np.ndarray) -> tuple[int, int] | None:
    """(width, height) as the file's header declares it; None for an unknown or short header."""
    buf = memoryview(data).cast("B") if isinstance(data, np.ndarray) else memoryview(data)
    for reader in (jpeg_size, png_size, webp_size, bmp_size, tiff_size, pnm_size, gif_size):
        size = reader(buf)
        if size is not None:
            return size
    return None
