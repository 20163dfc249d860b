"""How close the daemon gets to the interpreter on a video, at each thread count, in one run.

    python bench/bench_video.py [--threads 1 2] [--rounds 3] [--results 400] [--load N]
                                [--model PATH] [--video PATH]

MobileNetV2 224 float32 (random weights) on a looping 720x528 MPEG-4 video at `fps = 0`. For each
interpreter thread count, alternating for --rounds rounds:
  (a) the raw invoke rate (tight loop, pre-made input);
  (b) the daemon's results/s (video source -> real mosquitto -> counted by a subscriber);
  (f) the fair limit: (a) again while another thread does the daemon's input work (video
      decode + preprocess) beside it at (b)'s rate, so the input work takes what the daemon's
      input work takes, not more (flat out it would understate the limit);
and prints b/a and b/f (targets >= 0.95), with the daemon's own account of where the inference
thread's time went (the stats message's `interpreter` entry: ms per invoke in invoke() split into
CPU / core wait / stalled, and ms per gap between invokes, by cause).
`--load N` runs N busy-looping processes (one Python `while True` each, nice 0) for the whole
run, so every measurement, the limits included, shares the cores with them.
`--daemon-threads auto` runs (b) with `threads = "auto"` against the fixed-count limits.
`--cpus` adds (c) each round: the daemon again with `[pipelines.model] cpus = [<last CPU>]`
(its inference thread on a CPU of its own, every other thread on the rest), beside (b).
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import (REPO, Broker, cpu_summary, invoke_rate, own_cpu, run_daemon, with_cpus,
                    write_config)
from input_work import invoke_beside_input, video_source

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_bench_model import build_mobilenet_float, build_video  # noqa: E402


def busy_loop() -> None:  # pragma: no cover - runs in a child process until terminated
    while True:
        pass


class Load:
    """N processes spinning for the length of a `with` block."""

    def __init__(self, count: int) -> None:
        self._processes = [multiprocessing.Process(target=busy_loop, daemon=True, name=f"load{i}")
                           for i in range(count)]

    def __enter__(self) -> Load:
        for process in self._processes:
            process.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for process in self._processes:
            process.terminate()
            process.join(5)


def describe_interpreter(entry: dict[str, Any]) -> str:
    """One line from a stats `interpreter` entry."""
    if not entry:
        return "n/a (no stats message)"
    gaps = ", ".join(f"{cause} {ms:.3f}" for cause, ms in entry["gap_ms"].items() if ms >= 0.0005)
    split = entry.get("invoke_ms_split")
    inside = (f" (cpu {split['cpu']:.3f}, core wait {split['core_wait']:.3f}, stalled "
              f"{split['stalled']:.3f})" if split else "")
    core = (f"; core wait in gaps {entry['gap_core_wait_ms']:.3f}"
            if "gap_core_wait_ms" in entry else "")
    return (f"busy {entry['busy']:.1%}; invoke {entry['invoke_ms']:.3f} ms{inside}; "
            f"gap ms: {gaps or 'none'}{core}")


def measure(threads: int, daemon_threads: int | str, model: Path, video: Path, rounds: int,
            results: int, pythonpath: Path, pinned: bool = False) -> dict[str, Any]:
    rates: dict[str, list[float]] = {"a": [], "b": [], "f": [], "b/a": [], "b/f": []}
    if pinned:
        rates.update({"c": [], "c/a": [], "c/f": []})
    interp: list[dict[str, Any]] = []
    print(f"--- interpreter threads: {threads}"
          + (f" (daemon: threads = {daemon_threads!r})" if daemon_threads != threads else ""))
    with Broker() as broker, tempfile.TemporaryDirectory() as tmp:
        pipeline = {
            "source": {"type": "video", "path": str(video), "loop": True},
            "model": {"path": str(model), "threads": daemon_threads},
            "postprocess": {"task": "classification"},
        }
        config = write_config(Path(tmp) / "bench.toml", broker.port, pipeline)
        pinned_cpu = own_cpu()
        pinned_config = write_config(Path(tmp) / "pinned.toml", broker.port,
                                     with_cpus(pipeline, [pinned_cpu]))
        for round_ in range(1, rounds + 1):
            a = invoke_rate(model, threads)[0]
            auto = daemon_threads == "auto"
            # auto: ~4 s of trials first; the rate is taken over the last `results` results
            total = results * 3 if auto else results
            # with --cpus, (b) and (c) take turns at going first
            order = [config, pinned_config] if pinned else [config]
            runs = {}
            for path in order if round_ % 2 else order[::-1]:
                runs[path] = run_daemon(path, broker.port, total, stop_after=total,
                                        pythonpath=pythonpath)
                if auto:
                    runs[path].rate = runs[path].tail_rate(results)
            b, c = runs[config], runs.get(pinned_config)
            f, paced = invoke_beside_input(model, threads, video_source(video), rate=b.rate)
            for key, value in (("a", a), ("b", b.rate), ("f", f), ("b/a", b.rate / a),
                               ("b/f", b.rate / f)):
                rates[key].append(value)
            if c is not None:
                for key, value in (("c", c.rate), ("c/a", c.rate / a), ("c/f", c.rate / f)):
                    rates[key].append(value)
            interp.append(b.interpreter())
            print(f"round {round_}: (a) {a:6.1f}/s  (b) {b.rate:6.1f}/s  (f) {f:6.1f}/s "
                  f"[input beside it at {paced:5.1f}/s]  b/a {b.rate / a:.3f}  "
                  f"b/f {b.rate / f:.3f}  ({b.results} results, exit {b.exit_code}, "
                  f"peak RSS {b.peak_rss_mb:.0f} MB)")
            print(f"         daemon interpreter: {describe_interpreter(interp[-1])}")
            print(f"         daemon CPU ms per result by thread: {b.cpu_line()}")
            if c is not None:
                print(f"         (c) cpus = [{pinned_cpu}]: {c.rate:6.1f}/s  c/a {c.rate / a:.3f}  "
                      f"c/f {c.rate / f:.3f}; interpreter: "
                      f"{describe_interpreter(c.interpreter())}")
            entry = b.stats.get("pipelines", {}).get("bench", {})
            if auto:
                print(f"         daemon threads: {entry.get('threads')} "
                      f"(threads_auto {entry.get('threads_auto')})")
    summary = {key: statistics.median(values) for key, values in rates.items()}
    summary["threads"] = threads
    print(f"median of {rounds}: (a) {summary['a']:.1f}/s  (b) {summary['b']:.1f}/s  "
          f"(f) {summary['f']:.1f}/s  b/a {summary['b/a']:.3f}  b/f {summary['b/f']:.3f} "
          "(targets >= 0.95)" + (f"; (c) {summary['c']:.1f}/s  c/a {summary['c/a']:.3f}  "
                                 f"c/f {summary['c/f']:.3f}" if pinned else ""))
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--daemon-threads", default=None,
                        help="threads for (b): 'auto', or omit for the same count as (a) and (f)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median)")
    parser.add_argument("--results", type=int, default=400, help="results per daemon run")
    parser.add_argument("--load", type=int, default=0, help="busy-looping processes beside")
    parser.add_argument("--model", type=Path, default=None, help="default: MobileNetV2 float32")
    parser.add_argument("--video", type=Path, default=None, help="default: 720x528 MPEG-4")
    parser.add_argument("--cpus", action="store_true",
                        help="also run the daemon with its inference thread on a CPU of its own")
    parser.add_argument("--daemon-path", type=Path, default=REPO,
                        help="checkout whose edge_runtime runs (b) (default: this one)")
    args = parser.parse_args()
    model = args.model or build_mobilenet_float()
    video = args.video or build_video()
    print(f"model {model.name}, video {video.name}, {args.load} busy processes beside, "
          f"{cpu_summary()}")
    with Load(args.load):
        summaries = [measure(t, args.daemon_threads or t, model, video, args.rounds,
                             args.results, args.daemon_path, args.cpus) for t in args.threads]
        print(f"at the end: {cpu_summary()}")
    print("threads | (a) invoke/s | (b) daemon/s | (f) invoke beside input at (b)'s rate/s "
          "| b/a | b/f")
    for s in summaries:
        print(f"{s['threads']:7d} | {s['a']:12.1f} | {s['b']:12.1f} | {s['f']:38.1f} | "
              f"{s['b/a']:.2f} | {s['b/f']:.2f}"
              + (f"   (c) own CPU {s['c']:.1f}/s: c/a {s['c/a']:.2f} | c/f {s['c/f']:.2f}"
                 if "c" in s else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
