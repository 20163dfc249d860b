"""How close the daemon gets to the interpreter, on a MobileNet-size model, in one run.

    python bench/bench_pipeline.py [--threads 2] [--rounds 3] [--daemon-path DIR]

Prints (a) the raw invoke rate (tight loop, pre-made input: the limit), (b) the daemon's
end-to-end results/s (images at fps = 0 -> real mosquitto -> counted by a subscriber), (c) a naive
single-threaded loop (read, resize, invoke, publish and wait for the PUBACK), the ratios b/a and
b/c, per-stage p50/p99 latencies, the daemon's peak RSS, and the share of wall time the
interpreter spends in invoke during (b) and (c). Targets: b/a >= 0.95, b/c >= 1.3. The three
alternate for --rounds rounds; medians are reported. `--daemon-path` runs (b) with another
checkout's code (e.g. `git archive` of an older commit) to compare before/after in the same run.
The first run builds MobileNetV2 (random weights, needs TensorFlow) into bench/.cache/.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import paho.mqtt.client as mqtt

from common import REPO, Broker, cpu_summary, invoke_rate, percentiles, run_daemon, write_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_bench_model import build_images, build_mobilenet  # noqa: E402


def naive_loop(model_path: Path, frames: list[Path], threads: int, port: int) -> tuple[float, dict]:
    """(c) Everything on one thread, one step after the other, as a first script would do it."""
    from edge_runtime.model.runtime import select_runtime
    from edge_runtime.model.tflite_model import TfliteModel
    from edge_runtime.postprocessing.classification import ClassificationOptions, Classifier
    from edge_runtime.postprocessing.base import TaskContext
    from edge_runtime.preprocessing import ImagePreprocessor, PreprocessSpec

    model = TfliteModel(model_path, select_runtime(), threads=threads)
    meta = model.metadata
    spec = PreprocessSpec().updated(meta.preprocess if meta else {})
    preprocess = ImagePreprocessor(spec, model.inputs[0])
    classify = Classifier(ClassificationOptions(), TaskContext(tuple(model.outputs), ()))
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", port)
    client.loop_start()
    times: dict[str, list[float]] = {"read": [], "preprocess": [], "inference": [], "publish": []}
    start = time.perf_counter()
    for seq, path in enumerate(frames):
        t0 = time.perf_counter()
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        t1 = time.perf_counter()
        model.fill_input(lambda out: preprocess(image, out))
        t2 = time.perf_counter()
        model.invoke()
        t3 = time.perf_counter()
        body = {"seq": seq, **classify([model.output(0)], None)}
        client.publish("edge/bench/naive/result", json.dumps(body), qos=1).wait_for_publish(10)
        t4 = time.perf_counter()
        for stage, (a, b) in zip(times, ((t0, t1), (t1, t2), (t2, t3), (t3, t4))):
            times[stage].append((b - a) * 1e3)
    rate = len(frames) / (time.perf_counter() - start)
    client.disconnect()
    client.loop_stop()
    return rate, times


def interpreter_busy(invoke_ms: list[float], rate: float) -> float:
    """Share of the run's wall time the interpreter spent invoking (1.0 = never idle)."""
    if len(invoke_ms) < 2 or rate <= 0:
        return 0.0
    elapsed_ms = (len(invoke_ms) - 1) / rate * 1e3
    return sum(invoke_ms[1:]) / elapsed_ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="interpreter threads (all runs)")
    parser.add_argument("--daemon-path", type=Path, default=REPO,
                        help="checkout whose edge_runtime runs (b) (default: this one)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median)")
    parser.add_argument("--model", type=Path, default=None, help="default: MobileNetV2 int8")
    args = parser.parse_args()

    model = args.model or build_mobilenet()
    frames_dir = build_images()
    frames = sorted(frames_dir.glob("*.jpg"))
    print(f"model {model.name}, {len(frames)} JPEG frames 640x480, threads {args.threads}, "
          f"{cpu_summary()}")

    # The machine may be shared: the three measurements alternate for --rounds rounds and the
    # median of each is reported, so a busy moment cannot favour one of them.
    rates: dict[str, list[float]] = {"a": [], "b": [], "c": []}
    busy: dict[str, list[float]] = {"b": [], "c": []}
    complete = True
    with Broker() as broker, tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp) / "bench.toml", broker.port, {
            "source": {"type": "images", "path": str(frames_dir), "fps": 0},
            "model": {"path": str(model), "threads": args.threads},
            "postprocess": {"task": "classification"},
        })
        for round_ in range(1, args.rounds + 1):
            a, invoke_ms = invoke_rate(model, args.threads)
            b = run_daemon(config, broker.port, len(frames), pythonpath=args.daemon_path)
            c, naive_ms = naive_loop(model, frames, args.threads, broker.port)
            complete = complete and b.results == len(frames)
            busy["b"].append(interpreter_busy(b.timings.get("inference", []), b.rate))
            busy["c"].append(interpreter_busy(naive_ms["inference"], c))
            for key, value in zip("abc", (a, b.rate, c)):
                rates[key].append(value)
            print(f"round {round_}: (a) {a:6.1f}/s  (b) {b.rate:6.1f}/s  (c) {c:6.1f}/s  "
                  f"b/a {b.rate / a:.3f}  b/c {b.rate / c:.3f}  interpreter busy: daemon "
                  f"{busy['b'][-1]:.0%}, naive {busy['c'][-1]:.0%}  ({b.results}/{len(frames)} "
                  f"results, exit {b.exit_code}, daemon peak RSS {b.peak_rss_mb:.0f} MB)")
    a, b_rate, c = (statistics.median(rates[k]) for k in "abc")
    print(f"(a) raw invoke:        {a:8.1f} /s   invoke {percentiles(invoke_ms)}")
    print(f"(b) daemon end-to-end: {b_rate:8.1f} /s   peak RSS {b.peak_rss_mb:.0f} MB; "
          "per stage (from the payloads' timing_ms, last round):")
    for stage, values in b.timings.items():
        print(f"      {stage:<12} {percentiles(values)}")
    print(f"(c) naive loop:        {c:8.1f} /s   per stage (last round):")
    for stage, values in naive_ms.items():
        print(f"      {stage:<12} {percentiles(values)}")
    # Ratios per round compare runs made seconds apart; their median is the robust summary.
    ba = statistics.median(b / a for a, b in zip(rates["a"], rates["b"]))
    bc = statistics.median(b / c for b, c in zip(rates["b"], rates["c"]))
    print(f"median of {args.rounds} rounds: b/a = {ba:.3f} (target >= 0.95)   "
          f"b/c = {bc:.3f} (target >= 1.3)")
    print(f"at the end: {cpu_summary()}")
    print(f"interpreter busy (share of wall time spent in invoke, same run, so robust to a shared "
          f"machine): daemon {statistics.median(busy['b']):.1%}, naive loop "
          f"{statistics.median(busy['c']):.1%}")
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
