"""Named polygons in normalized frame coordinates, and which of them a box is in.

An object is in a zone when the bottom center of its box (where a person stands, where a car
touches the road) is inside the polygon: what Frigate and most NVRs use, so a tall box that
merely overlaps a zone's edge does not count. Even-odd ray casting; a point on an edge may fall
either way.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Zone:
    name: str
    points: tuple[tuple[float, float], ...]  # (x, y) vertices, 0-1, in order; at least 3

    def contains(self, x: float, y: float) -> bool:
        inside = False
        pts = self.points
        j = len(pts) - 1
        for i in range(len(pts)):
            xi, yi = pts[i]
            xj, yj = pts[j]
            if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
                inside = not inside
            j = i
        return inside


def anchor(box: dict[str, float]) -> tuple[float, float]:
    """The point of a detection's box that decides its zones: its bottom center."""
    return (box["xmin"] + box["xmax"]) / 2, box["ymax"]


def zones_of(box: dict[str, float], zones: tuple[Zone, ...]) -> list[str]:
    """Names of the zones the box is in, in config order."""
    x, y = anchor(box)
    return [zone.name for zone in zones if zone.contains(x, y)]
