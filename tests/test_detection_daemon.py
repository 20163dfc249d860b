"""A real (small) detector end to end: generated PNGs with known boxes -> daemon -> mosquitto ->
subscriber; the published boxes must match the drawn shapes in the original frames."""

from __future__ import annotations

from pathlib import Path

import cv2
import jsonschema
import numpy as np

from conftest import edge_runtime, write_config
from edge_runtime.payload_schemas import result_schema

REPO = Path(__file__).resolve().parent.parent
SHAPES_MODEL = REPO / "tests" / "models" / "det_shapes.tflite"  # yolo head, letterbox metadata
YOLO_V8 = REPO / "tests" / "models" / "det_yolo_v8.tflite"
SCHEMA = result_schema()  # as the task plugins assemble it (edge-runtime schema result)

# (frame width, height, shape, (xmin, ymin, xmax, ymax) in frame pixels, background, color):
# wide and tall frames, so the letterbox bars are on different sides.
SCENES = [
    (96, 64, "square", (10, 8, 40, 38), (40, 120, 40), (230, 230, 20)),
    (96, 64, "disc", (50, 20, 80, 50), (200, 200, 200), (20, 20, 160)),
    (96, 64, "square", (60, 30, 84, 54), (30, 30, 90), (250, 250, 250)),
    (96, 64, "disc", (20, 24, 56, 60), (120, 60, 20), (240, 200, 240)),
    (64, 96, "square", (10, 50, 40, 80), (90, 90, 90), (0, 220, 0)),
    (64, 96, "disc", (24, 10, 56, 42), (10, 100, 140), (250, 140, 0)),
    (64, 96, "square", (30, 30, 54, 54), (220, 180, 120), (60, 0, 120)),
    (64, 96, "disc", (8, 56, 44, 92), (60, 60, 60), (250, 250, 100)),
]


def draw_scenes(folder: Path) -> dict[str, tuple[str, tuple[float, ...]]]:
    """Write one PNG per scene; return name -> (label, box normalized to the frame)."""
    rng = np.random.default_rng(7)
    truth = {}
    folder.mkdir()
    for i, (width, height, shape, (x0, y0, x1, y1), background, color) in enumerate(SCENES):
        image = np.empty((height, width, 3), np.uint8)
        image[:] = background
        image = np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)
        if shape == "square":
            cv2.rectangle(image, (x0, y0), (x1 - 1, y1 - 1), color, -1)
        else:
            radius = (x1 - x0) / 2
            cv2.circle(image, (round((x0 + radius) * 16), round((y0 + radius) * 16)),
                       round((radius - 0.5) * 16), color, -1, cv2.LINE_AA, shift=4)
        name = f"{i:02d}_{shape}.png"
        cv2.imwrite(str(folder / name), image)
        truth[name] = (shape, (x0 / width, y0 / height, x1 / width, y1 / height))
    return truth


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union


def test_trained_detector_finds_each_shape_in_the_original_frame(tmp_path, mosquitto, subscribe,
                                                                 start_daemon):
    truth = draw_scenes(tmp_path / "scenes")
    sub = subscribe("edge/test-pi/shapes/result")
    config = write_config(tmp_path / "config.toml", mosquitto, [{
        "name": "shapes",
        "source": {"type": "images", "path": str(tmp_path / "scenes")},
        "model": {"path": str(SHAPES_MODEL), "threads": 1},
        # task, format, labels and letterbox preprocessing come from the model's metadata
    }])
    daemon = start_daemon(config)
    assert daemon.wait(60) == 0, daemon.log

    results = sub.json_on("edge/test-pi/shapes/result")
    assert sorted(r["source"]["name"] for r in results) == sorted(truth)
    for result in results:
        jsonschema.validate(result, SCHEMA)
        label, box = truth[result["source"]["name"]]
        # one shape, one detection: the neighbouring cells that also fire are suppressed
        assert len(result["detections"]) == 1, result
        best = result["detections"][0]
        got = tuple(best["box"][k] for k in ("xmin", "ymin", "xmax", "ymax"))
        assert best["label"] == label, (result["source"]["name"], best)
        # 0.85-0.97 when built; a letterbox undone wrongly (bars, scale) lands far below 0.7
        assert iou(got, box) >= 0.7, (result["source"]["name"], got, box)
        assert best["score"] >= 0.5


def test_check_reports_a_format_that_does_not_fit_the_outputs(tmp_path):
    config = write_config(tmp_path / "config.toml", None, [{
        "name": "det",
        "source": {"type": "images", "path": str(tmp_path)},
        "model": {"path": str(YOLO_V8)},
        "postprocess": {"task": "detection", "format": "ssd-postprocess"},
    }])
    done = edge_runtime("check", "--config", str(config))
    assert done.returncode == 2, done.stderr
    assert (f"{config}: pipelines[0].postprocess: ssd-postprocess expects four outputs: boxes "
            f"[1, N, 4], classes [1, N], scores [1, N] and count [1], got 'PartitionedCall:0' "
            f"[1, 7, 10]") in done.stderr
