"""`edge-runtime bench model.tflite`: invoke latency on this device, per interpreter thread count.

What a user runs on their Pi before choosing `threads` (and to see whether a delegate works):
a tight loop of invokes on one pre-made input, after warm-up, for each thread count.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.model.delegates import load_model
from edge_runtime.model.runtime import Runtime

WARMUP = 3


class ThreadSpecError(ValueError):
    """A --threads value that is not N, N..M or N,M,..."""


def parse_threads(text: str) -> list[int]:
    """"2" -> [2]; "1..4" -> [1, 2, 3, 4]; "1,2,4" -> [1, 2, 4]."""
    try:
        if ".." in text:
            low, high = (int(part) for part in text.split("..", 1))
            counts = list(range(low, high + 1))
        else:
            counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise ThreadSpecError(f"--threads {text!r}: expected N, N..M or N,M,...") from None
    if not counts or min(counts) < 1:
        raise ThreadSpecError(f"--threads {text!r}: thread counts start at 1")
    return sorted(set(counts))


@dataclass(frozen=True)
class ThreadResult:
    threads: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    per_second: float


def sample_input(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A random input of the right shape and type (the values do not change the op count)."""
    rng = np.random.default_rng(0)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, shape).astype(bool)
    return rng.standard_normal(shape).astype(dtype)


def bench_threads(path: Path, runtime: Runtime, threads: int, runs: int,
                  delegate: str | None) -> tuple[ThreadResult, str]:
    loaded = load_model(path, runtime, threads=threads, delegate=delegate)
    model = loaded.model
    for position, spec in enumerate(model.inputs):
        model.set_input(position, sample_input(spec.shape, spec.dtype))
    for _ in range(WARMUP):
        model.invoke()
    times = np.empty(runs)
    for run in range(runs):
        start = time.perf_counter()
        model.invoke()
        times[run] = time.perf_counter() - start
    times *= 1e3
    p50, p99 = np.percentile(times, [50, 99])
    mean = float(times.mean())
    return ThreadResult(threads, float(p50), float(p99), mean, 1e3 / mean), loaded.delegate


def run_bench(path: Path, runtime: Runtime, thread_counts: list[int], runs: int,
              delegate: str | None) -> dict[str, Any]:
    """Every thread count's latency; raises ModelLoadError for an unusable model file."""
    results, used = [], "cpu"
    for threads in thread_counts:
        result, used = bench_threads(path, runtime, threads, runs, delegate)
        results.append(result)
    return {
        "model": str(path),
        "runtime": runtime.describe(),
        "delegate": used,
        "runs": runs,
        "results": [asdict(r) for r in results],
    }


def format_report(report: dict[str, Any]) -> str:
    lines = [f"model:    {report['model']}",
             f"runtime:  {report['runtime']}",
             f"delegate: {report['delegate']}",
             f"runs:     {report['runs']} per thread count (after {WARMUP} warm-up)",
             f"{'threads':>7}  {'p50 ms':>9}  {'p99 ms':>9}  {'mean ms':>9}  {'invokes/s':>10}"]
    for r in report["results"]:
        lines.append(f"{r['threads']:>7}  {r['p50_ms']:>9.3f}  {r['p99_ms']:>9.3f}  "
                     f"{r['mean_ms']:>9.3f}  {r['per_second']:>10.1f}")
    return "\n".join(lines)
