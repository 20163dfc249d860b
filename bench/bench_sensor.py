"""Results/s of a tiny sensor model through the daemon and a real broker (target >= 5,000/s).

    python bench/bench_sensor.py [--rows 30000] [--qos 1] [--rounds 3]

The example vibration model (window 32 x 3 columns) reads a generated CSV at full speed
(`rate = 0`, stride 1: one result per row); a subscriber counts the results. The raw invoke rate of
the same model is printed alongside: with a model this small the limit is the Python work per
result (windowing, payload, JSON, MQTT), not the interpreter.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

from common import REPO, Broker, cpu_summary, invoke_rate, percentiles, run_daemon, write_config

MODEL = REPO / "examples" / "vibration" / "vibration.tflite"
WINDOW = 32


def write_csv(path: Path, rows: int) -> Path:
    rng = np.random.default_rng(0)
    t = np.arange(rows) / 100.0
    data = np.stack([np.sin(2 * np.pi * 5 * t), np.cos(2 * np.pi * 3 * t), 1.0 + 0 * t], axis=1)
    data += rng.normal(0, 0.05, data.shape)
    np.savetxt(path, data, delimiter=",", header="ax,ay,az", comments="", fmt="%.4f")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=30_000)
    parser.add_argument("--qos", type=int, choices=(0, 1), default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--daemon-path", type=Path, default=REPO)
    args = parser.parse_args()
    expected = args.rows - WINDOW + 1
    print(f"model {MODEL.name}, {expected} windows, qos {args.qos}, {cpu_summary()}")
    rates, invokes = [], []
    with Broker() as broker, tempfile.TemporaryDirectory() as tmp:
        csv = write_csv(Path(tmp) / "sensor.csv", args.rows)
        config = write_config(Path(tmp) / "bench.toml", broker.port, {
            "source": {"type": "csv", "path": str(csv), "stride": 1},
            "model": {"path": str(MODEL), "threads": args.threads},
        }, qos=args.qos)
        for round_ in range(1, args.rounds + 1):
            a, invoke_ms = invoke_rate(MODEL, args.threads, seconds=1.0)
            run = run_daemon(config, broker.port, expected, pythonpath=args.daemon_path,
                             qos=args.qos)
            rates.append(run.rate)
            invokes.append(a)
            print(f"round {round_}: daemon {run.rate:8.0f} results/s ({run.results}/{expected}, "
                  f"exit {run.exit_code}, peak RSS {run.peak_rss_mb:.0f} MB); "
                  f"raw invoke {a:8.0f}/s")
    print(f"raw invoke: {statistics.median(invokes):8.0f} /s   invoke {percentiles(invoke_ms)}")
    for stage, values in run.timings.items():
        print(f"  {stage:<12} {percentiles(values)}")
    print("CPU per result by thread (last round; /proc, the daemon names its threads):")
    for name, ms in run.cpu_ms_per_result().items():
        print(f"  {name:<16} {ms * 1e3:7.1f} us")
    print(f"median of {args.rounds}: {statistics.median(rates):.0f} results/s (target >= 5000)")
    return 0 if run.results == expected else 1


if __name__ == "__main__":
    sys.exit(main())
