"""Pruning and distillation against the model as given, in one edge-convert --compare run.

    python bench/bench_shrink.py [OUT_DIR]

Trains a digits CNN at 32x32 (scikit-learn's digits, upscaled; about 360k parameters), then runs
`edge-convert MODEL --compare --prune 0.8 --student mobilenet:0.25` on it: every quantization mode
of the model, of its 80%-pruned copy (fine-tuned on the training half) and of a MobileNet-style
student (width 0.25, about 17x fewer parameters) distilled on the unlabeled training inputs.
Prints edge-convert's table (size, gzip, accuracy on the held-out 30%, agreement with the model,
latency with and without XNNPACK, both runtimes) and writes the report and plot to OUT_DIR.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build(out: Path) -> dict[str, Path]:
    import keras
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    keras.utils.set_random_seed(0)
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32).repeat(4, axis=1).repeat(4, axis=2)
    x_train, x_val, y_train, y_val = train_test_split(
        images[..., None], digits.target, test_size=0.3, random_state=0, stratify=digits.target)
    model = keras.Sequential([
        keras.Input((32, 32, 1)),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(128, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x_train, y_train, epochs=10, batch_size=32, verbose=0)
    paths = {"model": out / "digits32.keras", "train": out / "train.npz",
             "inputs": out / "unlabeled.npy", "val": out / "val.npz"}
    model.save(paths["model"])
    np.savez(paths["train"], x=x_train, y=y_train)
    np.save(paths["inputs"], x_train)  # the student sees inputs only
    np.savez(paths["val"], x=x_val, y=y_val)
    print(f"model: {model.count_params()} parameters", flush=True)
    return paths


def main(out_dir: str | None) -> int:
    from converters.cli import main as edge_convert

    out = Path(out_dir or tempfile.mkdtemp(prefix="bench-shrink-"))
    out.mkdir(parents=True, exist_ok=True)
    paths = build(out)
    return edge_convert([
        str(paths["model"]), "--compare", "--prune", "0.8", "--train-data", str(paths["train"]),
        "--student", "mobilenet:0.25", "--inputs", str(paths["inputs"]),
        "--calibration-data", str(paths["inputs"]), "--validation-data", str(paths["val"]),
        "--report", str(out / "report.json"), "--plot", str(out / "compare.png"),
        "--no-progress",
    ])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None))
