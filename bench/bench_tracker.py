"""Per-frame cost of object tracking with 1, 10 and 50 moving objects (and two zones).

    python bench/bench_tracker.py [--frames 2000] [--rounds 3]

Objects move on random straight paths (bouncing off the frame's edges) with some jitter; each
frame's detections go through `ObjectTracker.process` exactly as the publishing thread calls it
(tracker + zones + events), and through `Tracker.update` alone. Prints the median over rounds of
the mean time per frame, in one process, side by side.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np

from common import REPO  # noqa: F401 - puts the repo on sys.path

from edge_runtime.tracking.objects import ObjectTracker
from edge_runtime.tracking.tracker import Tracker
from edge_runtime.tracking.zones import Zone

ZONES = (Zone("left", ((0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0))),
         Zone("porch", ((0.2, 0.6), (0.8, 0.6), (0.9, 1.0), (0.1, 1.0))))


def scene(objects: int, frames: int, seed: int = 0) -> list[list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    size = rng.uniform(0.03, 0.08, (objects, 2))
    pos = rng.uniform(0.1, 0.9, (objects, 2))
    vel = rng.uniform(-0.004, 0.004, (objects, 2))
    out = []
    for _ in range(frames):
        pos += vel
        vel[(pos < 0.05) | (pos > 0.95)] *= -1
        seen = pos + rng.normal(0, 0.002, pos.shape)
        out.append([{"index": 0, "label": "person", "score": 0.8,
                     "box": {"xmin": float(x - w / 2), "ymin": float(y - h / 2),
                             "xmax": float(x + w / 2), "ymax": float(y + h / 2)}}
                    for (x, y), (w, h) in zip(seen, size)])
    return out


def per_frame_ms(frames: list[list[dict[str, Any]]], full: bool) -> float:
    tracker = Tracker(max_age=10, min_hits=3)
    objects = ObjectTracker("bench", "bench", tracker, ZONES)
    prepared = [(np.array([[d["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")] for d in f]),
                 [d["label"] for d in f], [d["score"] for d in f]) for f in frames]
    t0 = time.perf_counter()
    if full:
        for i, detections in enumerate(frames):
            objects.process([dict(d) for d in detections], float(i))
    else:
        for boxes, labels, scores in prepared:
            tracker.update(boxes, labels, scores)
    return (time.perf_counter() - t0) * 1e3 / len(frames)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"{'objects':>7}  {'Tracker.update ms/frame':>24}  {'ObjectTracker.process ms/frame':>31}")
    for count in (1, 10, 50):
        frames = scene(count, args.frames)
        update = statistics.median(per_frame_ms(frames, False) for _ in range(args.rounds))
        full = statistics.median(per_frame_ms(frames, True) for _ in range(args.rounds))
        print(f"{count:>7}  {update:>24.3f}  {full:>31.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
