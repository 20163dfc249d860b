"""A stage's crops in one invoke and one by one, on one runtime: what the daemon's `Stage` gives.

Imported by tests/test_cascade.py (ai-edge-litert, in the test's own interpreter), and run as a
script by the same test under tflite-runtime's venv (numpy<2, its own Python), where it prints
the report as JSON: both runtimes go through the same code and the same checks.

    python tests/stage_batching.py <workdir> <runtime>
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # as a script under another venv
    sys.path.insert(0, str(REPO))

from edge_runtime.app_config import load_config  # noqa: E402
from edge_runtime.pipeline.assembly import assemble  # noqa: E402
from edge_runtime.pipeline.cascade import Stage, StageCounters  # noqa: E402
from edge_runtime.sources.base import Frame  # noqa: E402

SHAPES_MODEL = REPO / "tests" / "models" / "det_shapes.tflite"  # accepts a resized batch
DIGITS_FLOAT = REPO / "examples" / "digits" / "digits_float.tflite"  # its Reshape fixes batch 1


def several_shapes() -> tuple[Frame, list[dict[str, Any]]]:
    image = np.full((120, 240, 3), (40, 120, 40), np.uint8)
    detections = []
    for i in range(6):
        x0, y0 = 8 + i * 38, 20 + (i % 3) * 25
        if i % 2:
            cv2.circle(image, (x0 + 14, y0 + 14), 14, (20, 20, 160), -1, cv2.LINE_AA)
        else:
            cv2.rectangle(image, (x0, y0), (x0 + 27, y0 + 27), (230, 230, 20), -1)
        detections.append({"label": "square" if i % 2 == 0 else "disc", "score": 0.9 - i * 0.1,
                           "box": {"xmin": x0 / 240, "ymin": y0 / 120,
                                   "xmax": (x0 + 28) / 240, "ymax": (y0 + 28) / 120}})
    return Frame(image, 0), detections


def config(workdir: Path, runtime: str) -> Path:
    """A shapes detector pipeline with two stages: the detector again (batched), and digits."""
    (workdir / "scenes").mkdir(exist_ok=True)
    path = workdir / "batching.toml"
    path.write_text(
        f'[mqtt]\nhost = "127.0.0.1"\n[[pipelines]]\nname = "shapes"\n'
        f'[pipelines.source]\ntype = "images"\npath = "{workdir / "scenes"}"\n'
        f'[pipelines.model]\npath = "{SHAPES_MODEL}"\nthreads = 1\nruntime = "{runtime}"\n'
        f'[[pipelines.stages]]\nname = "shape"\n'
        f'[pipelines.stages.model]\npath = "{SHAPES_MODEL}"\nthreads = 1\n'
        f'runtime = "{runtime}"\n'
        f'[pipelines.stages.crop]\nmargin = 1.0\nsquare = true\nedge = "pad"\n'
        f'[[pipelines.stages]]\nname = "digit"\non = ["square"]\n'
        f'[pipelines.stages.model]\npath = "{DIGITS_FLOAT}"\nthreads = 1\n'
        f'runtime = "{runtime}"\n')
    return path


def report(workdir: Path, runtime: str) -> dict[str, Any]:
    """The shape stage batched (one invoke) and one by one on the same frame, and again with
    fewer crops (the batch resized down): counters and the detections each gave."""
    app = load_config(config(workdir, runtime))
    parts = assemble(app.pipelines[0], app)
    batched = parts.cascade.stages[0]
    one_by_one = Stage(batched.config, assemble(app.pipelines[0], app).cascade.stages[0].parts,
                       batching=False)
    frame, detections = several_shapes()
    a, b = [dict(d) for d in detections], [dict(d) for d in detections]
    counted_a, counted_b = StageCounters(), StageCounters()
    batched.run(frame, a, counted_a)
    one_by_one.run(frame, b, counted_b)
    first = (counted_a.invocations, counted_a.crops)
    few = [dict(d) for d in detections[:2]]
    batched.run(frame, few, counted_a)
    return {
        "runtime": batched.model.runtime.describe(),
        "capacity": {"batched": batched.capacity, "resizable": batched.resizable,
                     "one_by_one": one_by_one.capacity,
                     "digits": parts.cascade.stages[1].capacity},
        "batched": {"invocations": first[0], "crops": first[1], "stages": [d.get("stages") for d in a]},
        "one_by_one": {"invocations": counted_b.invocations, "crops": counted_b.crops,
                       "stages": [d.get("stages") for d in b]},
        "few": {"batch": batched.model.inputs[0].shape[0], "invocations": counted_a.invocations,
                "crops": counted_a.crops, "stages": [d.get("stages") for d in few]},
    }


if __name__ == "__main__":
    print(json.dumps(report(Path(sys.argv[1]), sys.argv[2])))
