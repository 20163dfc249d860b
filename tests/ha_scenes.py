"""Shared by the Home Assistant tests: a moving square for the shapes detector, and configs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from conftest import REPO, Broker, toml_value, write_config

SHAPES_MODEL = REPO / "tests" / "models" / "det_shapes.tflite"  # labels: square, disc


def moving_square(folder: Path, frames: int = 12) -> Path:
    """A square crossing a 320x240 frame left to right (the detector finds it, score ~1)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(frames):
        image = np.full((240, 320, 3), (40, 120, 40), np.uint8)
        x = 20 + i * 20
        cv2.rectangle(image, (x, 80), (x + 70, 150), (230, 230, 20), -1)
        cv2.imwrite(str(folder / f"{i:02d}.png"), image)
    return folder


def ha_config(path: Path, broker: Broker | None, scenes: Path, *, device: str = "ha-pi",
              pipelines: tuple[str, ...] = ("yard",), loop: bool = True, fps: float = 5.0,
              homeassistant: dict[str, Any] | None = None,
              extra: dict[str, dict[str, Any]] | None = None,
              zones: bool = True) -> Path:
    """A config with one detection pipeline per name, tracker + zone + snapshots on each."""
    specs = [{"name": name, "source": {"type": "images", "path": str(scenes), "loop": loop,
                                       "fps": fps},
              "model": {"path": str(SHAPES_MODEL), "threads": 1}} for name in pipelines]
    write_config(path, broker, specs, device=device, stats={"interval": 1.0})
    # A [pipelines.x] sub-table belongs to the [[pipelines]] item above it: add them per item.
    text = path.read_text().split("[[pipelines]]")
    head, bodies = text[0], text[1:]
    out = [head]
    for body in bodies:
        sections = {"tracker": {"min_hits": 2, "max_age": 2},
                    "snapshot": {"min_interval": 0.5, "max_width": 200, "quality": 70},
                    **(extra or {})}
        body += "".join(f"[pipelines.{name}]\n" + "".join(
            f"{k} = {toml_value(v)}\n" for k, v in values.items()) for name, values in
            sections.items())
        if zones:
            body += '[[pipelines.zones]]\nname = "left"\npoints = [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]\n'
        out.append(body)
    doc = "[[pipelines]]".join(out)
    settings = {"discovery": True, "control": True, **(homeassistant or {})}
    doc += "[homeassistant]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in settings.items())
    path.write_text(doc)
    return path
