"""Start-up and memory: process start to the first result at the broker, and the daemon's RSS
against a script that only loads the interpreter and runs it.

    python bench/bench_startup.py [--rounds 5]

Cases: the digits example (28x28 int8 model, the bundled PNGs) and 224x224 models (MobileNetV2
int8 and float32, the bench's 640x480 JPEGs). For each, alternating for --rounds rounds:
  first result: from `Popen` of `python -m edge_runtime run` to the first result received by a
      subscriber already connected to the broker (target < 2 s);
  RSS: the daemon's peak resident memory over the run (one image pipeline) against the peak of
      a script that imports the runtime, loads the same model, allocates and invokes it once
      (target: daemon <= script + 40 MB). Both peaks are the kernel's VmHWM; beside them, the
      resident set split into anonymous memory and mapped files at the peak.
Before each process starts, the page cache's copies of this Python's libraries and the model are
dropped (common.evict_from_page_cache: the RSS of a mapped library depends on how its pages came
into the cache; evicted is the state a device is in after a reboot). `--no-evict` measures the
cache as it is found.
Medians are printed, with the numbers behind them.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import (REPO, Broker, cpu_summary, evict_from_page_cache, run_daemon,
                    runtime_libraries, write_config)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_bench_model import build_images, build_mobilenet, build_mobilenet_float  # noqa: E402

DIGITS = REPO / "examples" / "digits"

# Only what a user's own script needs to run the model: the runtime, the model, one invoke.
INTERPRETER_ONLY = """
import sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter
interpreter = Interpreter(model_path=sys.argv[1], num_threads=1)
interpreter.allocate_tensors()
detail = interpreter.get_input_details()[0]
interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
interpreter.invoke()
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork and exec, so a child of this bench
# (which may have built the models with TensorFlow, 1.1 GB) would report the bench's own peak.
with open("/proc/self/status") as status:
    memory = {key: int(value.split()[0]) / 1024 for key, _, value in
              (line.partition(":") for line in status)
              if key in ("VmHWM", "RssAnon", "RssFile")}
print(memory["VmHWM"], memory["RssAnon"], memory["RssFile"])
"""


def interpreter_only_rss(model: Path) -> tuple[float, dict[str, float]]:
    """Peak RSS in MB of a process that only loads `model` and invokes it once, and its resident
    set by kind (anon, file) at the end."""
    out = subprocess.run([sys.executable, "-c", INTERPRETER_ONLY, str(model)], check=True,
                         capture_output=True, text=True).stdout
    peak, anon, file = (float(x) for x in out.strip().splitlines()[-1].split())
    return peak, {"anon": anon, "file": file}


def split(memory: dict[str, float]) -> str:
    return f"anon {memory.get('anon', 0):.0f} + file {memory.get('file', 0):.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--before", type=Path, default=None,
                        help="another checkout whose daemon also runs each round (A/B of RSS)")
    parser.add_argument("--no-evict", action="store_true",
                        help="measure with the page cache as found (no eviction before each run)")
    args = parser.parse_args()
    cases = {
        "digits (28x28 int8)": (DIGITS / "digits_int8.tflite", DIGITS / "samples"),
        "MobileNetV2 224x224 int8": (build_mobilenet(), build_images()),
        "MobileNetV2 224x224 float32": (build_mobilenet_float(), build_images()),
    }
    print(cpu_summary())
    firsts: dict[str, list[float]] = {name: [] for name in cases}
    daemon_rss: dict[str, list[float]] = {name: [] for name in cases}
    script_rss: dict[str, list[float]] = {name: [] for name in cases}
    splits: dict[str, list[tuple[dict[str, float], dict[str, float]]]] = {n: [] for n in cases}
    before_rss: dict[str, list[float]] = {name: [] for name in cases}
    libraries = runtime_libraries()

    def evict(model: Path) -> None:
        if not args.no_evict:
            evict_from_page_cache([*libraries, model])

    print("page cache: " + ("as found" if args.no_evict else
                            f"{len(libraries)} libraries and the model evicted before each process"))
    with Broker() as broker, tempfile.TemporaryDirectory() as tmp:
        for round_ in range(1, args.rounds + 1):
            for name, (model, images) in cases.items():
                config = write_config(Path(tmp) / "startup.toml", broker.port, {
                    "source": {"type": "images", "path": str(images)},
                    "model": {"path": str(model), "threads": 1},
                })
                count = len([p for p in images.iterdir() if p.suffix in (".png", ".jpg")])
                evict(model)
                run = run_daemon(config, broker.port, count)
                if args.before:
                    evict(model)
                    old = run_daemon(config, broker.port, count, pythonpath=args.before)
                    before_rss[name].append(old.peak_rss_mb)
                    print(f"         before ({args.before}): peak RSS {old.peak_rss_mb:.1f} MB "
                          f"({split(old.rss_split_mb)}); this tree {run.peak_rss_mb:.1f} MB",
                          flush=True)
                evict(model)
                script, script_split = interpreter_only_rss(model)
                firsts[name].append(run.first_result_s)
                daemon_rss[name].append(run.peak_rss_mb)
                script_rss[name].append(script)
                splits[name].append((run.rss_split_mb, script_split))
                print(f"round {round_}: {name}: first result {run.first_result_s:.2f} s, "
                      f"daemon peak RSS {run.peak_rss_mb:.0f} MB ({split(run.rss_split_mb)}), "
                      f"interpreter-only script {script:.0f} MB ({split(script_split)}) "
                      f"({run.results}/{count} results)", flush=True)
    print(f"at the end: {cpu_summary()}")
    print("case | first result (s) | daemon RSS (MB) | interpreter-only RSS (MB) | difference (MB)"
          " | difference: anon + file (MB)")
    for name in cases:
        diffs = [d - s for d, s in zip(daemon_rss[name], script_rss[name])]
        anon = statistics.median(d["anon"] - s["anon"] for d, s in splits[name])
        file = statistics.median(d["file"] - s["file"] for d, s in splits[name])
        print(f"{name} | {statistics.median(firsts[name]):.2f} | "
              f"{statistics.median(daemon_rss[name]):.1f} | {statistics.median(script_rss[name]):.1f}"
              f" | {statistics.median(diffs):+.1f} | {anon:+.1f} + {file:+.1f}")
    if args.before:
        for name in cases:
            saved = statistics.median(b - d for b, d in zip(before_rss[name], daemon_rss[name]))
            print(f"{name}: before {statistics.median(before_rss[name]):.1f} MB, this tree "
                  f"{statistics.median(daemon_rss[name]):.1f} MB: {saved:.1f} MB less "
                  "(median per round)")
    print("targets: first result < 2 s; daemon RSS <= interpreter-only + 40 MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
