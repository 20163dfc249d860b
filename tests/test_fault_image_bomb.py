"""A decompression bomb is refused from its header, never decoded (issue 12, scenario 5).

A 20000x20000 PNG is a few hundred KB on disk and 1.2 GB once decoded to BGR; today's main decoded
it on every loop pass (17 s, 2.4 GB RSS) and classified it. The images source reads the size from
the header first and skips (counts, logs) images over `max_pixels`.
"""

from __future__ import annotations

import shutil
import signal
import struct
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import DIGITS_INT8, DIGITS_SAMPLES, wait_until, write_config

RESULT = "edge/test-pi/digits/result"
STATS = "edge/test-pi/stats"


def png_bomb(path: Path, width: int, height: int) -> Path:
    """A valid 8-bit grayscale PNG of zeros, compressed row by row (never held in memory)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0, then the pixels
    parts = [packer.compress(row) for _ in range(height)]
    idat = b"".join(parts) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
                     + chunk(b"IEND", b""))
    return path


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_png_bomb_is_skipped_from_its_header(tmp_path, mosquitto, subscribe, start_daemon):
    folder = tmp_path / "images"
    folder.mkdir()
    samples = sorted(DIGITS_SAMPLES.glob("*.png"))[:3]
    for sample in samples:
        shutil.copy(sample, folder)
    bomb = png_bomb(folder / "001_bomb.png", 20000, 20000)
    assert bomb.stat().st_size < 1_000_000
    sub = subscribe(RESULT, STATS)
    pipeline = {"name": "digits", "source": {"type": "images", "path": str(folder), "loop": True,
                                             "fps": 5},
                "model": {"path": str(DIGITS_INT8), "threads": 1}}
    daemon = start_daemon(write_config(tmp_path / "c.toml", mosquitto, [pipeline],
                                       stats={"interval": 1.0}))

    def names() -> list[str]:
        return [r["source"]["name"] for r in sub.json_on(RESULT)]

    # Two whole passes over the folder: the bomb comes up (and is refused) twice.
    wait_until(lambda: len(names()) >= 2 * len(samples) + 1, 60)
    assert "001_bomb.png" not in names(), names()
    assert set(names()) == {s.name for s in samples}
    peak = peak_rss_mb(daemon.process.pid)
    assert peak < 900, f"the daemon's peak RSS was {peak:.0f} MB: the bomb was decoded"
    wait_until(lambda: sub.json_on(STATS)
               and sub.json_on(STATS)[-1]["pipelines"]["digits"]["bad_inputs"] >= 1, 20)
    assert "skipping image" in daemon.log and "over max_pixels" in daemon.log
    assert daemon.log.count("001_bomb.png: 20000x20000") == 1  # logged once, not every pass
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.log


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".webp", ".tif", ".ppm", ".pgm"])
def test_the_header_gives_the_size_of_each_listed_format(tmp_path, ext):
    from edge_runtime.sources.image_header import image_size

    image = np.zeros((37, 53, 3), np.uint8)
    ok, data = cv2.imencode(ext, image[:, :, 0] if ext == ".pgm" else image)
    assert ok and image_size(data.tobytes()) == (53, 37)


def test_a_small_pixel_limit_refuses_before_decoding(tmp_path):
    from edge_runtime.sources.image_decode import ImageTooLarge, read_image

    from edge_runtime.sources.image_header import image_size

    path = png_bomb(tmp_path / "b.png", 400, 300)
    assert image_size(path.read_bytes()) == (400, 300)
    assert read_image(path, None, max_pixels=120_000)[1] == (400, 300)
    t0 = time.perf_counter()
    with pytest.raises(ImageTooLarge, match="400x300"):
        read_image(path, None, max_pixels=119_999)
    assert time.perf_counter() - t0 < 1.0
