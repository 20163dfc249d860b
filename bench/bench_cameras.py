"""Several cameras at once: 1, 2 and 4 video pipelines with the same model in one daemon.

    python bench/bench_cameras.py [--pipelines 1 2 4] [--rounds 3] [--seconds 4] [--threads 1]
                                  [--model PATH] [--video PATH]

Each pipeline reads its own copy of the looping 720x528 video at `fps = 0` (as a camera that
delivers faster than the machine can infer) into MobileNetV2 224 float32. The runs alternate for
--rounds rounds; each counts every pipeline's results at the broker for about --seconds seconds
after the first result, then stops the daemon. Prints, medians over the rounds: the total
results/s against the single pipeline's rate measured in the same rounds (target >= 0.9), each
pipeline's share, and fairness: the slowest pipeline's rate over the fastest's (1.0 = equal) and
whether any pipeline was starved (under half its fair share).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench_video import describe_interpreter
from common import Broker, cpu_summary, run_daemon, write_pipelines

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_bench_model import build_mobilenet_float, build_video  # noqa: E402


def per_pipeline_rates(arrivals: list[float], topics: list[str], names: list[str],
                       skip_s: float = 1.0) -> dict[str, float]:
    """Results/s of each pipeline over the common window: from `skip_s` after the first result
    (start-up) to the last result of any pipeline."""
    if not arrivals:
        return dict.fromkeys(names, 0.0)
    start, end = arrivals[0] + skip_s, arrivals[-1]
    counts = dict.fromkeys(names, 0)
    for when, topic in zip(arrivals, topics):
        if start <= when <= end:
            counts[topic.split("/")[2]] += 1
    span = max(end - start, 1e-9)
    return {name: counts[name] / span for name in names}


def measure(count: int, config_dir: Path, port: int, model: Path, videos: list[Path],
            threads: int | str, expected_rate: float, seconds: float) -> dict[str, float]:
    names = [f"cam{i}" for i in range(count)]
    config = write_pipelines(config_dir / f"cams{count}.toml", port, {
        name: {"source": {"type": "video", "path": str(videos[i]), "loop": True},
               "model": {"path": str(model), "threads": threads},
               "postprocess": {"task": "classification"}}
        for i, name in enumerate(names)})
    # stop after about `seconds` of results (plus the 1 s skipped), at the rate seen so far
    total = int(expected_rate * (seconds + 1.0)) if expected_rate else int(150 * (seconds + 1))
    run = run_daemon(config, port, total, stop_after=total, pipeline="+")
    print(f"         cam0's interpreter: {describe_interpreter(run.interpreter('cam0'))}")
    return per_pipeline_rates(run.arrivals, run.topics, names)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipelines", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--threads", default="1", help="interpreter threads per pipeline, or auto")
    parser.add_argument("--model", type=Path, default=None, help="default: MobileNetV2 float32")
    parser.add_argument("--video", type=Path, default=None, help="default: 720x528 MPEG-4")
    args = parser.parse_args()
    threads: int | str = args.threads if args.threads == "auto" else int(args.threads)
    model = args.model or build_mobilenet_float()
    video = args.video or build_video()
    print(f"model {model.name}, video {video.name}, threads {threads!r} per pipeline, "
          f"{cpu_summary()}")
    results: dict[int, list[dict[str, float]]] = {n: [] for n in args.pipelines}
    with Broker() as broker, tempfile.TemporaryDirectory() as tmp:
        # one file per camera: no pipeline shares a decoder's file cache position with another
        videos = []
        for i in range(max(args.pipelines)):
            copy = Path(tmp) / f"camera{i}{video.suffix}"
            shutil.copyfile(video, copy)
            videos.append(copy)
        last_total = 0.0
        for round_ in range(1, args.rounds + 1):
            for count in args.pipelines:
                rates = measure(count, Path(tmp), broker.port, model, videos, threads,
                                last_total, args.seconds)
                results[count].append(rates)
                last_total = sum(rates.values())
                shares = " ".join(f"{name} {rate:6.1f}" for name, rate in rates.items())
                print(f"round {round_}: {count} pipeline(s): total {sum(rates.values()):6.1f}/s  "
                      f"[{shares}]", flush=True)
    print(f"at the end: {cpu_summary()}")
    single = [sum(r.values()) for r in results.get(1, [])]
    print("pipelines | total results/s | total / single | per pipeline (median) | "
          "slowest / fastest | starved")
    summary: dict[int, dict[str, Any]] = {}
    for count, rounds in results.items():
        totals = [sum(r.values()) for r in rounds]
        ratio = (statistics.median(t / s for t, s in zip(totals, single)) if single else
                 float("nan"))
        fairness = statistics.median(min(r.values()) / max(r.values()) if max(r.values()) else 0.0
                                     for r in rounds)
        starved = any(rate < 0.5 * sum(r.values()) / count for r in rounds for rate in r.values())
        per = statistics.median(rate for r in rounds for rate in r.values())
        summary[count] = {"total": statistics.median(totals), "ratio": ratio}
        print(f"{count:9d} | {statistics.median(totals):15.1f} | {ratio:14.2f} | {per:21.1f} | "
              f"{fairness:17.2f} | {'yes' if starved else 'no'}")
    print("target: total >= 0.9 x the single pipeline's rate, no pipeline starved")
    return 0


if __name__ == "__main__":
    sys.exit(main())
