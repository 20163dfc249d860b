"""Train and convert the example and test models from data that ships with scikit-learn.

    python examples/build_models.py            # needs the 'convert' and 'test' extras

Writes (small, committed to the repo so the daemon and its tests need no TensorFlow):
  examples/digits/digits_int8.tflite   CNN on sklearn's 8x8 digits, full-integer int8
  examples/digits/digits_float.tflite  the same CNN, float32
  examples/digits/samples/*.png        held-out digits as 64x64 PNGs, true label in the name
  examples/vibration/vibration.tflite  1-D CNN on a synthetic 3-axis vibration signal
  examples/vibration/vibration.csv     rows of that signal, 'label' column says which class
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

logger = logging.getLogger("build_models")
HERE = Path(__file__).resolve().parent
DIGIT_LABELS = [str(i) for i in range(10)]
VIBRATION_LABELS = ["idle", "normal", "imbalance"]
VIBRATION_COLUMNS = ["ax", "ay", "az"]
VIBRATION_WINDOW = 32


def _seed(seed: int) -> None:
    import tensorflow as tf

    np.random.seed(seed)
    tf.random.set_seed(seed)
    tf.keras.utils.set_random_seed(seed)


def _convert(model, representative: np.ndarray | None, int8_io: bool) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if representative is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([x[None]] for x in representative[:200])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    return converter.convert()


def _write(path: Path, model_bytes: bytes, metadata) -> None:
    from converters.metadata_writer import embed_metadata

    path.write_bytes(embed_metadata(model_bytes, metadata))
    logger.info("wrote %s (%d bytes)", path, path.stat().st_size)


def build_digits(out_dir: Path) -> None:
    import tensorflow as tf
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    import cv2
    from edge_runtime.model.metadata import ModelMetadata

    _seed(0)
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., None]  # 0..1, [N, 8, 8, 1]
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.25, random_state=0, stratify=digits.target
    )
    model = tf.keras.Sequential([
        tf.keras.Input((8, 8, 1), name="image"),
        tf.keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        tf.keras.layers.MaxPooling2D(),
        tf.keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=30, batch_size=32, verbose=0)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    logger.info("digits CNN test accuracy %.3f", accuracy)

    # PNG pixel = value * 255, so the device divides by 255: mean 0, std 255.
    metadata = ModelMetadata(
        task="classification",
        labels=tuple(DIGIT_LABELS),
        preprocess={"color": "gray", "resize": "stretch", "mean": [0.0], "std": [255.0],
                    "layout": "nhwc"},
        postprocess={"top_k": 3},
        source={"framework": "keras", "dataset": "sklearn.datasets.load_digits"},
        converter={"name": "examples/build_models.py"},
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    _write(out_dir / "digits_float.tflite", _convert(model, None, False), metadata)
    _write(out_dir / "digits_int8.tflite", _convert(model, x_train, True), metadata)

    samples = out_dir / "samples"
    samples.mkdir(exist_ok=True)
    for old in samples.glob("*.png"):
        old.unlink()
    for i in range(20):
        pixels = np.rint(x_test[i, :, :, 0] * 255).astype(np.uint8)
        big = cv2.resize(pixels, (64, 64), interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(samples / f"{i:03d}_digit{y_test[i]}.png"), big)
    logger.info("wrote 20 samples to %s", samples)


def vibration_signal(label: int, rows: int, rng: np.random.Generator) -> np.ndarray:
    """Synthetic 3-axis accelerometer rows for a class: idle, normal hum, imbalance wobble."""
    t = np.arange(rows, dtype=np.float32) / 100.0
    noise = rng.normal(0.0, 0.05, size=(rows, 3)).astype(np.float32)
    if label == 0:
        signal = np.zeros((rows, 3), np.float32)
    elif label == 1:
        phase = rng.uniform(0, 2 * np.pi)
        signal = 0.5 * np.sin(2 * np.pi * 25 * t + phase)[:, None] * np.array([1, 0.5, 0.2])
    else:
        phase = rng.uniform(0, 2 * np.pi)
        signal = 1.5 * np.sin(2 * np.pi * 6 * t + phase)[:, None] * np.array([1, 1, 0.3])
    signal = signal.astype(np.float32)
    signal[:, 2] += 1.0  # gravity on z
    return signal + noise


def build_vibration(out_dir: Path) -> None:
    import tensorflow as tf

    from edge_runtime.model.metadata import ModelMetadata

    _seed(1)
    rng = np.random.default_rng(1)
    windows, labels = [], []
    for _ in range(600):
        label = int(rng.integers(0, 3))
        windows.append(vibration_signal(label, VIBRATION_WINDOW, rng))
        labels.append(label)
    x, y = np.stack(windows), np.array(labels)
    model = tf.keras.Sequential([
        tf.keras.Input((VIBRATION_WINDOW, 3), name="window"),
        tf.keras.layers.Conv1D(8, 5, activation="relu"),
        tf.keras.layers.GlobalAveragePooling1D(),
        tf.keras.layers.Dense(3, activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=40, batch_size=32, verbose=0)
    logger.info("vibration model train accuracy %.3f", model.evaluate(x, y, verbose=0)[1])
    metadata = ModelMetadata(
        task="classification",
        labels=tuple(VIBRATION_LABELS),
        sensor={"columns": VIBRATION_COLUMNS, "window": VIBRATION_WINDOW},
        source={"framework": "keras", "dataset": "synthetic vibration (examples/build_models.py)"},
        converter={"name": "examples/build_models.py"},
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    _write(out_dir / "vibration.tflite", _convert(model, None, False), metadata)

    # A replay file: blocks of 64 rows per class so every window lies inside one class.
    with (out_dir / "vibration.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["t", *VIBRATION_COLUMNS, "label"])
        row = 0
        for label in [0, 1, 2, 1, 0, 2]:
            for values in vibration_signal(label, 64, rng):
                writer.writerow([f"{row / 100:.2f}", *(f"{v:.4f}" for v in values),
                                 VIBRATION_LABELS[label]])
                row += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="examples folder to write into")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    build_digits(args.out / "digits")
    build_vibration(args.out / "vibration")


if __name__ == "__main__":
    main()
