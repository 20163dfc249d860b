"""What a stage costs the primary model: the daemon's results/s with and without a stage, side by side.

    python bench/bench_stage_overhead.py [--results 1500] [--rounds 3]

The daemon flat out (looping 640x480 JPEGs, one shape each, the small shapes detector, threads 1)
in three configurations, interleaved per round in one run: no stage; a light stage (the digits
CNN, 28x28, on each detection: far less work than the primary model's frame); a heavy stage
(MobileNetV2 224 int8 from bench/build_bench_model.py on each detection: more work than the
primary model's frame). Stages run on the publish thread while the inference thread invokes the
next frame, so a stage should cost the primary rate nothing while it is shorter than a frame and
bound it once it is longer (then the publish thread is the slowest stage of the pipeline).
Printed (medians over the rounds): results/s and its ratio to "no stage" in the same round, the
stage's time per frame (`timing_ms` "stages.<name>"), the primary invoke ms and the interpreter's
busy share (stats `interpreter`), and CPU ms per result of the inference and publish threads.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench_snapshot import scenes
from build_bench_model import build_mobilenet
from common import REPO, Broker, run_daemon, write_pipelines

SHAPES = REPO / "tests" / "models" / "det_shapes.tflite"
DIGITS = REPO / "examples" / "digits" / "digits_float.tflite"


def pipeline(folder: Path, stage: Path | None) -> dict[str, Any]:
    config: dict[str, Any] = {"source": {"type": "images", "path": str(folder), "loop": True},
                              "model": {"path": str(SHAPES), "threads": 1}}
    if stage is not None:
        config["stages"] = [{"name": "stage", "model": {"path": str(stage), "threads": 1}}]
    return config


def write(path: Path, port: int, config: dict[str, Any]) -> Path:
    """common.write_pipelines plus the stage's [[pipelines.stages]] table."""
    stages = config.pop("stages", [])
    write_pipelines(path, port, {"bench": config})
    text = path.read_text()
    for stage in stages:
        text += (f'[[pipelines.stages]]\nname = "{stage["name"]}"\n[pipelines.stages.model]\n'
                 f'path = "{stage["model"]["path"]}"\nthreads = {stage["model"]["threads"]}\n')
    path.write_text(text)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    variants = {"no stage": None, "light stage (digits CNN)": DIGITS,
                "heavy stage (MobileNetV2 int8)": build_mobilenet()}
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as tmp, Broker() as broker:
        folder = scenes(Path(tmp) / "scenes")
        for round_ in range(args.rounds):
            base = 0.0
            for name, stage in variants.items():  # side by side, interleaved per round
                config = write(Path(tmp) / "config.toml", broker.port, pipeline(folder, stage))
                run = run_daemon(config, broker.port, args.results, stop_after=args.results)
                if stage is None:
                    base = run.rate
                entry = run.interpreter()
                cpu = run.cpu_ms_per_result()
                stage_ms = run.timings.get("stages.stage", [0.0])
                rows[name].append({
                    "rate": run.rate, "ratio": run.rate / base if base else 0.0,
                    "stage_ms": statistics.median(stage_ms),
                    "invoke_ms": entry.get("invoke_ms", 0.0), "busy": entry.get("busy", 0.0),
                    "inference_cpu": cpu.get("inference-bench", 0.0),
                    "publish_cpu": cpu.get("publish-bench", 0.0)})
                print(f"round {round_ + 1}: {name}: {run.rate:.1f} results/s", flush=True)
    print(f"\n{'variant':<32}{'results/s':>10}{'x none':>8}{'stage ms':>10}{'invoke ms':>10}"
          f"{'busy':>7}{'infer CPU':>10}{'publish CPU':>12}  (medians; CPU ms per result)")
    for name, values in rows.items():
        med = {key: statistics.median(v[key] for v in values) for key in values[0]}
        print(f"{name:<32}{med['rate']:>10.1f}{med['ratio']:>8.2f}{med['stage_ms']:>10.3f}"
              f"{med['invoke_ms']:>10.3f}{med['busy']:>7.0%}{med['inference_cpu']:>10.3f}"
              f"{med['publish_cpu']:>12.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
