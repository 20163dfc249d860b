"""How close the daemon gets to the interpreter, on a MobileNet-size model, in one run.

    python bench/bench_pipeline.py [--threads 1 2] [--rounds 3] [--daemon-path DIR]

For each interpreter thread count, prints (a) the raw invoke rate (tight loop, pre-made input:
the limit), (b) the daemon's end-to-end results/s (images at fps = 0 -> real mosquitto -> counted
by a subscriber), (c) a naive single-threaded loop (read, resize, invoke, publish and wait for
the PUBACK), the ratios b/a and b/c, per-stage p50/p99 latencies, the daemon's peak RSS, and the
share of wall time the interpreter spends in invoke during (b) and (c). Also (d): the daemon's
own input work alone (decode + preprocess, one thread, no model), and (e): (a) again while a
thread does (d)'s work non-stop beside it, i.e. what the interpreter can reach when the frames
must be decoded on the same machine, as in (b); b/e shows what the pipeline itself leaves idle.
Targets: b/a >= 0.95, b/c >= 1.3. The measurements alternate for
--rounds rounds; medians are reported. `--daemon-path` runs (b) with another checkout's code
(e.g. `git archive` of an older commit) to compare before/after in the same run.
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

from common import (REPO, Broker, cpu_summary, invoke_rate, own_cpu, percentiles, run_daemon,
                    with_cpus, write_config)
from input_work import images_source, input_rate, invoke_beside_input, load_with_preprocessor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_bench_model import build_images, build_mobilenet  # noqa: E402


def naive_loop(model_path: Path, frames: list[Path], threads: int, port: int) -> tuple[float, dict]:
    """(c) Everything on one thread, one step after the other, as a first script would do it."""
    from edge_runtime.postprocessing.base import TaskContext
    from edge_runtime.postprocessing.classification import ClassificationOptions, Classifier

    model, preprocess = load_with_preprocessor(model_path, threads)
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


def measure(threads: int, model: Path, frames_dir: Path, frames: list[Path], rounds: int,
            daemon_path: Path, pinned: bool = False) -> dict[str, float]:
    # The machine may be shared: the measurements alternate for `rounds` rounds and the median
    # of each is reported, so a busy moment cannot favour one of them.
    rates: dict[str, list[float]] = {"a": [], "b": [], "c": [], "d": [], "e": [], "p": []}
    busy: dict[str, list[float]] = {"b": [], "c": []}
    complete = True
    print(f"--- interpreter threads: {threads}")
    with Broker() as broker, tempfile.TemporaryDirectory() as tmp:
        pipeline = {
            "source": {"type": "images", "path": str(frames_dir), "fps": 0},
            "model": {"path": str(model), "threads": threads},
            "postprocess": {"task": "classification"},
        }
        config = write_config(Path(tmp) / "bench.toml", broker.port, pipeline)
        pinned_cpu = own_cpu()
        pinned_config = write_config(Path(tmp) / "pinned.toml", broker.port,
                                     with_cpus(pipeline, [pinned_cpu]))
        for round_ in range(1, rounds + 1):
            a, invoke_ms = invoke_rate(model, threads)
            b = run_daemon(config, broker.port, len(frames), pythonpath=daemon_path)
            if pinned:  # (b) again with the inference thread on a CPU of its own
                p = run_daemon(pinned_config, broker.port, len(frames), pythonpath=daemon_path)
                rates["p"].append(p.rate)
                print(f"         (b) with cpus = [{pinned_cpu}]: {p.rate:6.1f}/s  "
                      f"{p.rate / b.rate:.3f} of (b)")
            c, naive_ms = naive_loop(model, frames, threads, broker.port)
            d = input_rate(model, images_source(frames_dir))
            e = invoke_beside_input(model, threads, images_source(frames_dir))[0]
            complete = complete and b.results == len(frames)
            busy["b"].append(interpreter_busy(b.timings.get("inference", []), b.rate))
            busy["c"].append(interpreter_busy(naive_ms["inference"], c))
            for key, value in zip("abcde", (a, b.rate, c, d, e)):
                rates[key].append(value)
            print(f"round {round_}: (a) {a:6.1f}/s  (b) {b.rate:6.1f}/s  (c) {c:6.1f}/s  "
                  f"(d) {d:6.1f}/s  (e) {e:6.1f}/s  b/a {b.rate / a:.3f}  b/c {b.rate / c:.3f}  "
                  "interpreter busy: "
                  f"daemon {busy['b'][-1]:.0%}, naive {busy['c'][-1]:.0%}  ({b.results}/"
                  f"{len(frames)} results, exit {b.exit_code}, peak RSS {b.peak_rss_mb:.0f} MB)")
    a, b_rate, c, d, e = (statistics.median(rates[k]) for k in "abcde")
    print(f"(a) raw invoke:        {a:8.1f} /s   invoke {percentiles(invoke_ms)}")
    print(f"(b) daemon end-to-end: {b_rate:8.1f} /s   peak RSS {b.peak_rss_mb:.0f} MB; "
          "per stage (from the payloads' timing_ms, last round):")
    for stage, values in b.timings.items():
        print(f"      {stage:<12} {percentiles(values)}")
    print("    CPU per result by thread (last round; /proc, the daemon names its threads):")
    for name, ms in b.cpu_ms_per_result().items():
        print(f"      {name:<16} {ms:6.3f} ms")
    print(f"(c) naive loop:        {c:8.1f} /s   per stage (last round):")
    for stage, values in naive_ms.items():
        print(f"      {stage:<12} {percentiles(values)}")
    print(f"(d) input alone:       {d:8.1f} /s   (decode + preprocess on one thread, no model)")
    print(f"(e) invoke beside (d): {e:8.1f} /s   (a) while another thread decodes non-stop")
    # Ratios per round compare runs made seconds apart; their median is the robust summary.
    summary = {
        "threads": threads, "a": a, "b": b_rate, "c": c, "d": d, "e": e,
        "b/e": statistics.median(b / e for b, e in zip(rates["b"], rates["e"])),
        "b/a": statistics.median(b / a for a, b in zip(rates["a"], rates["b"])),
        "b/c": statistics.median(b / c for b, c in zip(rates["b"], rates["c"])),
        "busy_b": statistics.median(busy["b"]), "busy_c": statistics.median(busy["c"]),
        "complete": complete,
    }
    if pinned:
        summary["p/a"] = statistics.median(p / a for a, p in zip(rates["a"], rates["p"]))
        summary["p/e"] = statistics.median(p / e for e, p in zip(rates["e"], rates["p"]))
    print(f"median of {rounds} rounds: b/a = {summary['b/a']:.3f} (target >= 0.95)   "
          f"b/c = {summary['b/c']:.3f} (target >= 1.3)   b/e = {summary['b/e']:.3f}   "
          f"interpreter busy: daemon "
          f"{summary['busy_b']:.1%}, naive loop {summary['busy_c']:.1%}")
    if pinned:
        print(f"with cpus = [{pinned_cpu}]: {statistics.median(rates['p']):.1f}/s, "
              f"p/a {summary['p/a']:.3f}, p/e {summary['p/e']:.3f}")
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="interpreter thread counts to measure (each: all four runs)")
    parser.add_argument("--daemon-path", type=Path, default=REPO,
                        help="checkout whose edge_runtime runs (b) (default: this one)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median)")
    parser.add_argument("--cpus", action="store_true",
                        help="also run (b) with its inference thread on a CPU of its own")
    parser.add_argument("--model", type=Path, default=None, help="default: MobileNetV2 int8")
    args = parser.parse_args()

    model = args.model or build_mobilenet()
    frames_dir = build_images()
    frames = sorted(frames_dir.glob("*.jpg"))
    print(f"model {model.name}, {len(frames)} JPEG frames 640x480, {cpu_summary()}")
    summaries = [measure(threads, model, frames_dir, frames, args.rounds, args.daemon_path,
                         args.cpus)
                 for threads in args.threads]
    print(f"at the end: {cpu_summary()}")
    print("threads | (a) invoke/s | (b) daemon/s | (c) naive/s | (d) input/s | (e) invoke beside "
          "input/s | b/a | b/c | b/e | busy (b) / (c)")
    for s in summaries:
        print(f"{s['threads']:7d} | {s['a']:12.1f} | {s['b']:12.1f} | {s['c']:11.1f} | "
              f"{s['d']:11.1f} | {s['e']:23.1f} | {s['b/a']:.2f} | {s['b/c']:.2f} | "
              f"{s['b/e']:.2f} | {s['busy_b']:.0%} / {s['busy_c']:.0%}")
    return 0 if all(s["complete"] for s in summaries) else 1


if __name__ == "__main__":
    sys.exit(main())
