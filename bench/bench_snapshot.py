"""What snapshots cost, and whether the inference thread notices them.

    python bench/bench_snapshot.py [--results 1500] [--rounds 2]

1. `render` alone: a 640x480 frame with 3 boxes, drawn and encoded at max_width 640 and 320.
2. The daemon flat out (looping 640x480 JPEGs, the small shapes detector, tracker on) in three
   configurations, side by side in one run: no snapshots; a snapshot at every label change with
   `min_interval = 0` while the label changes on every frame (the worst case: the `snapshots`
   thread encodes as fast as it can, newer requests replace older ones); and `min_interval = 1`.
   Printed: results/s, the inference thread's ms per invoke and per result (CPU), the publish
   thread's CPU per result, the snapshots thread's CPU per result.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from common import REPO, Broker, run_daemon, write_pipelines

from edge_runtime.homeassistant.snapshot import render

MODEL = REPO / "tests" / "models" / "det_shapes.tflite"


def scenes(folder: Path) -> Path:
    """Square and disc frames in turn: the label set changes with every frame."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        image = np.clip(rng.normal(110, 20, (480, 640, 3)), 0, 255).astype(np.uint8)
        x = 80 + 50 * i
        if i % 2:
            cv2.circle(image, (x + 60, 240), 60, (20, 20, 160), -1)
        else:
            cv2.rectangle(image, (x, 180), (x + 120, 300), (230, 230, 20), -1)
        cv2.imwrite(str(folder / f"{i:02d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return folder


def render_ms(width: int, repeat: int = 50) -> float:
    image = np.clip(np.random.default_rng(1).normal(110, 40, (480, 640, 3)), 0, 255) \
        .astype(np.uint8)
    fields = {"detections": [{"label": f"l{i}", "score": 0.9, "id": i, "box": {
        "xmin": 0.1 + 0.25 * i, "ymin": 0.2, "xmax": 0.3 + 0.25 * i, "ymax": 0.7}}
        for i in range(3)]}
    t0 = time.perf_counter()
    for _ in range(repeat):
        render(image, fields, width, 80)
    return (time.perf_counter() - t0) * 1e3 / repeat


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    for width in (640, 320):
        print(f"render + encode 640x480 -> width {width}, quality 80: {render_ms(width):.2f} ms")
    variants = {"no snapshots": None, "every change (min_interval 0)": 0.0,
                "min_interval 1 s": 1.0}
    rows: dict[str, list[tuple[float, float, float, float, float]]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp, Broker() as broker:
        folder = scenes(Path(tmp) / "scenes")
        for _ in range(args.rounds):
            for name, interval in variants.items():  # side by side, interleaved per round
                pipeline = {"source": {"type": "images", "path": str(folder), "loop": True},
                            "model": {"path": str(MODEL), "threads": 1},
                            "tracker": {"min_hits": 1}}
                if interval is not None:
                    pipeline["snapshot"] = {"min_interval": interval, "max_width": 640}
                config = write_pipelines(Path(tmp) / "config.toml", broker.port,
                                         {"bench": pipeline})
                run = run_daemon(config, broker.port, args.results, stop_after=args.results)
                cpu = run.cpu_ms_per_result()
                rows[name].append((run.rate, run.interpreter().get("invoke_ms", 0.0),
                                   cpu.get("inference-bench", 0.0), cpu.get("publish-bench", 0.0),
                                   cpu.get("snapshots", 0.0)))
    print(f"{'variant':<32}{'results/s':>10}{'invoke ms':>10}{'infer CPU':>10}"
          f"{'publish CPU':>12}{'snapshots CPU':>14}  (CPU: ms per result, medians)")
    for name, values in rows.items():
        med = [statistics.median(v[i] for v in values) for i in range(5)]
        print(f"{name:<32}{med[0]:>10.1f}{med[1]:>10.3f}{med[2]:>10.3f}{med[3]:>12.3f}"
              f"{med[4]:>14.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
