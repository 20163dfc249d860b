"""Still images from a folder or a glob pattern, read with OpenCV.

`ImageFileDecoder` is how an image file becomes a Frame; the converter reads its calibration and
validation images with it too, so a model is calibrated on the pixels the device decodes.
"""

from __future__ import annotations

import glob
import logging
from dataclasses import dataclass, field
from pathlib import Path

from edge_runtime.config.typed import at_least
from edge_runtime.sources.base import (
    EndOfStream,
    Frame,
    Kind,
    Source,
    SourceContext,
    SourceError,
    SourceTraits,
)
from edge_runtime.ratelimit import RateLimitedLogger
from edge_runtime.sources.image_decode import ImageTooLarge, read_image

logger = logging.getLogger(__name__)

# 50 MP is 150 MB decoded, affordable on a 1 GB Pi; a 12 MP camera image is well under it.
DEFAULT_MAX_PIXELS = 50_000_000
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}


@dataclass(frozen=True)
class ImagesOptions:
    type: str
    path: str  # a folder, a file or a glob pattern; relative to the config file
    loop: bool = False
    fps: float = field(default=0.0, metadata=at_least(0))
    # JPEGs at least twice the model input are decoded at 1/2, 1/4 or 1/8 size (image_decode.py)
    reduced_decode: bool = True
    # Images whose header declares more pixels are skipped (counted as bad inputs) undecoded.
    max_pixels: int = field(default=DEFAULT_MAX_PIXELS, metadata=at_least(1))

    def traits(self) -> SourceTraits:
        return SourceTraits(Kind.IMAGE, live=False, max_fps=self.fps)


class ImageFileDecoder:
    """Image file -> Frame: decoded at a reduced size when `reduced_decode` and the model input
    (`image_size`, width x height) allow it; ImageTooLarge past `max_pixels`."""

    def __init__(self, image_size: tuple[int, int] | None, reduced_decode: bool = True,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS) -> None:
        self.target = image_size if reduced_decode else None
        self.max_pixels = max_pixels

    def frame(self, path: Path, index: int) -> Frame | None:
        """The frame the images source gives for `path` (BGR, `full_size` set when decoded
        smaller than the file); None when it cannot be read."""
        image, size = read_image(path, self.target, self.max_pixels)
        if image is None:
            return None
        reduced = size != (image.shape[1], image.shape[0])
        return Frame(image, index, path.name, full_size=size if reduced else None)


def list_images(pattern: str) -> list[Path]:
    path = Path(pattern)
    if path.is_dir():
        return sorted(p for p in path.iterdir()
                      if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if path.is_file():
        return [path]
    return sorted(Path(p) for p in glob.glob(pattern) if Path(p).suffix.lower() in IMAGE_SUFFIXES)


class ImagesSource(Source):
    def __init__(self, options: ImagesOptions, ctx: SourceContext) -> None:
        self.pattern = str(ctx.resolve(options.path))
        self.options = options
        self._decoder = ImageFileDecoder(ctx.image_size, options.reduced_decode,
                                         options.max_pixels)
        self._files: list[Path] = []
        self._position = 0
        self._count = 0
        self._errors = 0
        self._warn = RateLimitedLogger(logger, interval=300.0)  # per file: once per 5 min at most

    def open(self) -> None:
        self._files = list_images(self.pattern)
        if not self._files:
            raise SourceError(f"no images match {self.pattern!r}")

    def read(self) -> Frame | None:
        while True:
            if self._position >= len(self._files):
                if not self.options.loop:
                    raise EndOfStream
                self._position = 0
            path = self._files[self._position]
            self._position += 1
            try:
                frame = self._decoder.frame(path, self._count)
            except ImageTooLarge as exc:
                self._errors += 1
                self._warn.warning(str(path), "skipping image %s: %s", path, exc)
                if self._count == 0 and self._errors >= len(self._files):
                    raise SourceError(f"none of the images matching {self.pattern!r} can be "
                                      f"used: {exc}") from None
                continue
            if frame is None:
                self._errors += 1
                logger.warning("skipping unreadable image %s", path)
                if self._errors >= len(self._files) and self._count == 0:
                    raise SourceError(f"none of the images matching {self.pattern!r} can be read")
                continue
            self._count += 1
            return frame

    def input_errors(self) -> int:
        return self._errors
