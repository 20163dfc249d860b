"""Batching: a stage's crops in one invoke vs one by one; N pipelines on one model file sharing one
batching interpreter vs an interpreter each.

    .venv/bin/python bench/bench_batching.py [--model M.tflite] [--seconds 3]

Part 1 (per crop, both runtimes): a frame with 1, 4 and 16 detections goes through the daemon's
own `Stage` (crop, preprocess, invoke, post-process), once batched (the model resized to the crop
count, one invoke) and once crop by crop; printed: ms per crop, best of 20 frames after warm-up.
The tflite-runtime half runs in the interpreter named by EDGE_RUNTIME_TFLITE_PYTHON (the
numpy<2 venv of deploy/run-tests.sh), skipped without it.

Part 2 (ai-edge-litert): P pipeline threads each need the model on their own frames as fast as
they can for `--seconds`: either each owns an interpreter (the daemon's design), or they hand
their inputs to one worker thread that invokes them together as a batch of up to P. Printed:
inferences per second of all threads together and mean latency per inference.

Default model: the cascade example's emotion classifier (examples/cascade/setup.sh), else the
test detector tests/models/det_shapes.tflite; both accept a resized batch.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge_runtime.app_config import load_config  # noqa: E402
from edge_runtime.pipeline.assembly import assemble  # noqa: E402
from edge_runtime.pipeline.cascade import Stage, StageCounters  # noqa: E402
from edge_runtime.sources.base import Frame  # noqa: E402

EMOTION = REPO / "examples" / "cascade" / "models" / "emotion.tflite"
SHAPES = REPO / "tests" / "models" / "det_shapes.tflite"
COUNTS = (1, 4, 16)


def stages(model: Path, runtime: str, workdir: Path) -> tuple[Stage, Stage]:
    """(batched, one by one) stages of `model` under a shapes detector pipeline."""
    config = workdir / "batching.toml"
    config.write_text(
        f'[mqtt]\nhost = "127.0.0.1"\n[[pipelines]]\nname = "p"\n'
        f'[pipelines.source]\ntype = "images"\npath = "{workdir}"\n'
        f'[pipelines.model]\npath = "{SHAPES}"\nthreads = 1\nruntime = "{runtime}"\n'
        f'[[pipelines.stages]]\nname = "s"\nmax_per_frame = {max(COUNTS)}\n'
        f'[pipelines.stages.model]\npath = "{model}"\nthreads = 1\nruntime = "{runtime}"\n'
        f'[pipelines.stages.crop]\nmargin = 0.0\n')
    app = load_config(config)
    batched = assemble(app.pipelines[0], app).cascade.stages[0]
    single = assemble(app.pipelines[0], app).cascade.stages[0]
    return batched, Stage(single.config, single.parts, batching=False)


def frame_with(count: int) -> tuple[Frame, list[dict]]:
    rng = np.random.default_rng(count)
    image = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    detections = []
    for i in range(count):
        x, y = 20 + (i % 8) * 75, 40 + (i // 8) * 200
        detections.append({"label": "x", "score": 1.0 - i / 100,
                           "box": {"xmin": x / 640, "ymin": y / 480, "xmax": (x + 64) / 640,
                                   "ymax": (y + 80) / 480}})
    return Frame(image, 0), detections


def per_crop(model: Path, runtime: str) -> dict:
    out: dict = {"runtime": runtime, "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        batched, single = stages(model, runtime, Path(tmp))
        out["capacity"] = batched.capacity
        for count in COUNTS:
            frame, detections = frame_with(count)
            row = {"crops": count}
            for name, stage in (("batched", batched), ("single", single)):
                counters = StageCounters()
                times = []
                for i in range(25):
                    dets = [dict(d) for d in detections]
                    t0 = time.perf_counter()
                    stage.run(frame, dets, counters)
                    if i >= 5:
                        times.append(time.perf_counter() - t0)
                row[name] = min(times) / count * 1e3
                row[f"{name}_invokes"] = counters.invocations // 25
            out["rows"].append(row)
    return out


def shared_vs_own(model_path: Path, pipelines: int, seconds: float) -> dict:
    from edge_runtime.model.runtime import select_runtime
    from edge_runtime.model.tflite_model import TfliteModel

    runtime = select_runtime("ai-edge-litert")
    probe = TfliteModel(model_path, runtime)
    shape, dtype = probe.inputs[0].shape, probe.inputs[0].dtype
    inputs = np.random.default_rng(0).random((pipelines, *shape[1:])).astype(dtype)
    results: dict = {}

    def run_threads(body) -> tuple[int, float]:
        stop = time.monotonic() + seconds
        counts, latencies = [0] * pipelines, [0.0] * pipelines
        threads = [threading.Thread(target=body, args=(i, stop, counts, latencies))
                   for i in range(pipelines)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        total = sum(counts)
        return total, sum(latencies) / max(total, 1)

    models = [TfliteModel(model_path, runtime) for _ in range(pipelines)]

    def own(i: int, stop: float, counts: list, latencies: list) -> None:
        model = models[i]
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            model.set_input(0, inputs[i:i + 1])
            model.invoke()
            model.output(0)
            latencies[i] += time.perf_counter() - t0
            counts[i] += 1

    total, latency = run_threads(own)
    results["own"] = {"per_s": total / seconds, "latency_ms": latency * 1e3}

    shared = TfliteModel(model_path, runtime)
    requests: queue.Queue = queue.Queue()
    done_flag = threading.Event()

    def worker() -> None:
        size = 1
        while not done_flag.is_set():
            try:
                first = requests.get(timeout=0.1)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < pipelines:
                try:
                    batch.append(requests.get_nowait())
                except queue.Empty:
                    break
            if len(batch) != size:
                shared.resize_batch(len(batch))
                size = len(batch)
            shared.set_input(0, np.stack([inputs[i] for i, _ in batch]))
            shared.invoke()
            output = shared.output(0)
            for k, (_, reply) in enumerate(batch):
                reply.put(output[k])

    batcher = threading.Thread(target=worker)
    batcher.start()

    def client(i: int, stop: float, counts: list, latencies: list) -> None:
        reply: queue.Queue = queue.Queue(maxsize=1)
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            requests.put((i, reply))
            reply.get()
            latencies[i] += time.perf_counter() - t0
            counts[i] += 1

    total, latency = run_threads(client)
    done_flag.set()
    batcher.join()
    results["shared"] = {"per_s": total / seconds, "latency_ms": latency * 1e3}
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=EMOTION if EMOTION.exists() else SHAPES)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--per-crop-only", metavar="RUNTIME", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.per_crop_only:  # the child process in the other runtime's venv
        print(json.dumps(per_crop(args.model, args.per_crop_only)))
        return 0
    runs = [per_crop(args.model, "ai-edge-litert")]
    other = os.environ.get("EDGE_RUNTIME_TFLITE_PYTHON")
    if other:
        done = subprocess.run([other, __file__, "--model", str(args.model), "--per-crop-only",
                               "tflite-runtime"], capture_output=True, text=True, check=True)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"model {args.model.name}; part 1: one stage's crops, ms per crop (crop + preprocess + "
          f"invoke + post-process), best of 20 frames, 1 thread")
    print(f"{'runtime':>15} | crops | batched (invokes) | one by one (invokes) | batched/one")
    for run in runs:
        for row in run["rows"]:
            print(f"{run['runtime']:>15} | {row['crops']:5d} | {row['batched']:8.3f} "
                  f"({row['batched_invokes']:2d})     | {row['single']:8.3f} "
                  f"({row['single_invokes']:2d})        | {row['batched'] / row['single']:.2f}")
    if not other:
        print("tflite-runtime: skipped (set EDGE_RUNTIME_TFLITE_PYTHON)")
    print(f"\npart 2: P pipelines, one model file, {args.seconds:.0f} s each, ai-edge-litert, "
          f"1 thread per interpreter")
    print(f"{'P':>2} | {'own interpreters /s':>19} | {'latency ms':>10} | "
          f"{'one batching /s':>15} | {'latency ms':>10}")
    for pipelines in (2, 4):
        r = shared_vs_own(args.model, pipelines, args.seconds)
        print(f"{pipelines:>2} | {r['own']['per_s']:19.0f} | {r['own']['latency_ms']:10.3f} | "
              f"{r['shared']['per_s']:15.0f} | {r['shared']['latency_ms']:10.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
