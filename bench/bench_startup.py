"""Start-up and memory: process start to the first result at the broker, and the daemon's RSS
against a script that only loads the interpreter and runs it.

    python bench/bench_startup.py [--rounds 5]

Cases: the digits example (28x28 int8 model, the bundled PNGs) and 224x224 models (MobileNetV2
int8 and float32, the bench's 640x480 JPEGs). For each, alternating for --rounds rounds:
  first result: from `Popen` of `python -m edge_runtime run` to the first result received by a
      subscriber already connected to the broker (target < 2 s);
  RSS: the daemon's peak resident memory over the run (one image pipeline) against the peak of
      a script that imports the runtime, loads the same model, allocates and invokes it once
      (target: daemon <= script + 40 MB).
Medians are printed, with the numbers behind them.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import REPO, Broker, cpu_summary, run_daemon, write_config

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
    print(next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024)
"""


def interpreter_only_rss(model: Path) -> float:
    """Peak RSS in MB of a process that only loads `model` and invokes it once."""
    out = subprocess.run([sys.executable, "-c", INTERPRETER_ONLY, str(model)], check=True,
                         capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
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
    with Broker() as broker, tempfile.TemporaryDirectory() as tmp:
        for round_ in range(1, args.rounds + 1):
            for name, (model, images) in cases.items():
                config = write_config(Path(tmp) / "startup.toml", broker.port, {
                    "source": {"type": "images", "path": str(images)},
                    "model": {"path": str(model), "threads": 1},
                })
                count = len([p for p in images.iterdir() if p.suffix in (".png", ".jpg")])
                run = run_daemon(config, broker.port, count)
                script = interpreter_only_rss(model)
                firsts[name].append(run.first_result_s)
                daemon_rss[name].append(run.peak_rss_mb)
                script_rss[name].append(script)
                print(f"round {round_}: {name}: first result {run.first_result_s:.2f} s, "
                      f"daemon peak RSS {run.peak_rss_mb:.0f} MB, interpreter-only script "
                      f"{script:.0f} MB ({run.results}/{count} results)", flush=True)
    print(f"at the end: {cpu_summary()}")
    print("case | first result (s) | daemon RSS (MB) | interpreter-only RSS (MB) | difference (MB)")
    for name in cases:
        diffs = [d - s for d, s in zip(daemon_rss[name], script_rss[name])]
        print(f"{name} | {statistics.median(firsts[name]):.2f} | "
              f"{statistics.median(daemon_rss[name]):.0f} | {statistics.median(script_rss[name]):.0f}"
              f" | {statistics.median(diffs):+.0f}")
    print("targets: first result < 2 s; daemon RSS <= interpreter-only + 40 MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
