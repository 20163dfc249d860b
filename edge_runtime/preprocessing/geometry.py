"""Where a model-input pixel came from in the original frame (to undo letterbox and crop)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Geometry:
    """frame_x = input_x * scale_x + shift_x (pixels); likewise for y."""

    frame_width: int
    frame_height: int
    input_width: int
    input_height: int
    scale_x: float = 1.0
    scale_y: float = 1.0
    shift_x: float = 0.0
    shift_y: float = 0.0

    def to_frame(self, x: float, y: float) -> tuple[float, float]:
        """Normalized (0-1) input coordinates -> normalized frame coordinates, clipped to 0-1."""
        fx = (x * self.input_width * self.scale_x + self.shift_x) / self.frame_width
        fy = (y * self.input_height * self.scale_y + self.shift_y) / self.frame_height
        return min(max(fx, 0.0), 1.0), min(max(fy, 0.0), 1.0)

    @classmethod
    def identity(cls, width: int, height: int) -> Geometry:
        return cls(width, height, width, height)
