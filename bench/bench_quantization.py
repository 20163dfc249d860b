"""What each quantization mode costs and buys, for one model, measured side by side in one run.

    python bench/bench_quantization.py [--model M.keras --calibration-data D --validation-data V]
                                       [--rounds 30] [--tflite-runtime-python PY]

Without --model it trains a CNN on scikit-learn's digits upscaled to 32x32 (a few seconds of
work per invoke would hide nothing, so the net is wide enough that invoke time is measurable).
Runs `edge-convert --compare` (every mode, verified with the daemon's loader), then times every
mode's model again *interleaved* (round-robin, shuffled order each round) so load on the machine
hits all modes alike. Prints per mode: size ratio, accuracy delta (points) and latency ratio
against float32 ("none").
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

logger = logging.getLogger("bench_quantization")


def build_digits32(folder: Path) -> tuple[Path, Path, Path]:
    """A CNN on digits at 32x32 and its calibration/validation arrays (.npz with x, y)."""
    import cv2
    import tensorflow as tf
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    tf.keras.utils.set_random_seed(0)
    digits = load_digits()
    images = np.stack([cv2.resize((d / 16.0).astype(np.float32), (32, 32)) for d in digits.images])
    x = images[..., None]
    x_train, x_val, y_train, y_val = train_test_split(
        x, digits.target, test_size=0.25, random_state=0, stratify=digits.target)
    model = tf.keras.Sequential([
        tf.keras.Input((32, 32, 1), name="image"),
        tf.keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        tf.keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        tf.keras.layers.MaxPooling2D(),
        tf.keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
        tf.keras.layers.MaxPooling2D(),
        tf.keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
        tf.keras.layers.GlobalAveragePooling2D(),
        tf.keras.layers.Dense(64, activation="relu"),
        tf.keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=8, batch_size=32, verbose=0)
    path = folder / "digits32.keras"
    model.save(path)
    np.savez(folder / "calib.npz", x=x_train[:300], y=y_train[:300])
    np.savez(folder / "val.npz", x=x_val, y=y_val)
    return path, folder / "calib.npz", folder / "val.npz"


def interleaved_latency(paths: dict[str, Path], rounds: int, per_round: int) -> dict[str, float]:
    """Median invoke time (ms) per model, timed round-robin in a shuffled order each round."""
    from converters.verify import to_input
    from edge_runtime.model.runtime import select_runtime
    from edge_runtime.model.tflite_model import TfliteModel

    runtime = select_runtime("ai-edge-litert")
    models = {mode: TfliteModel(path, runtime, threads=1) for mode, path in paths.items()}
    rng = np.random.default_rng(0)
    for model in models.values():
        spec = model.inputs[0]
        model.set_input(0, to_input(rng.random(spec.shape, dtype=np.float32), spec))
        model.invoke()  # warm-up: first invoke allocates and packs weights
    times: dict[str, list[float]] = {mode: [] for mode in models}
    order = list(models)
    shuffler = random.Random(0)
    for _ in range(rounds):
        shuffler.shuffle(order)
        for mode in order:
            model = models[mode]
            for _ in range(per_round):
                start = time.perf_counter()
                model.invoke()
                times[mode].append(time.perf_counter() - start)
    return {mode: statistics.median(values) * 1000.0 for mode, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--calibration-data", type=Path)
    parser.add_argument("--validation-data", type=Path)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--per-round", type=int, default=20)
    parser.add_argument("--tflite-runtime-python")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    from converters.convert import Options, run
    from converters.modes import MODE_NAMES

    with tempfile.TemporaryDirectory(prefix="bench-quant-") as tmp:
        folder = Path(tmp)
        if args.model:
            model, calib, val = args.model, args.calibration_data, args.validation_data
        else:
            logger.info("training the digits32 CNN")
            model, calib, val = build_digits32(folder)
        started = time.monotonic()
        result = run(Options(model=model, modes=MODE_NAMES, calibration_data=calib,
                             validation_data=val, output_dir=folder / "models",
                             tflite_runtime_python=args.tflite_runtime_python, progress=False))
        convert_s = time.monotonic() - started
        report = result.report
        print(report.table())
        print(f"\nconvert + verify, all modes: {convert_s:.1f} s")
        paths = {m.mode: folder / "models" / f"{model.stem}_{m.mode}.tflite"
                 for m in report.modes if m.status == "ok"}
        if "none" not in paths:
            raise SystemExit("float32 conversion failed; nothing to compare against")
        latency = interleaved_latency(paths, args.rounds, args.per_round)

    base = next(m for m in report.modes if m.mode == "none")
    metric = "accuracy" if base.accuracy is not None else "agreement"
    print(f"\nagainst float32 ({base.size_bytes / 1024:.1f} KB, {latency['none']:.3f} ms/invoke, "
          f"{metric} {getattr(base, metric):.2%}); latency interleaved, "
          f"{args.rounds}x{args.per_round} invokes per mode, 1 thread:")
    print(f"{'mode':8}  {'size ratio':>10}  {metric + ' delta':>15}  {'latency ratio':>13}  "
          f"{'ms/invoke':>9}")
    for m in report.modes:
        if m.mode not in paths:
            print(f"{m.mode:8}  {m.status}: {m.message}")
            continue
        delta = (getattr(m, metric) - getattr(base, metric)) * 100.0
        print(f"{m.mode:8}  {m.size_bytes / base.size_bytes:10.2f}  {delta:+13.2f} pt  "
              f"{latency[m.mode] / latency['none']:13.2f}  {latency[m.mode]:9.3f}")


if __name__ == "__main__":
    main()
