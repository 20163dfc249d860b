"""Small real models and data sets for the converter tests, built from data that ships with
scikit-learn and from the synthetic vibration signal of examples/build_models.py.

    python tests/converter_fixtures/train.py OUT_DIR     # what the session fixture does

Everything is written under OUT_DIR (see `build`); nothing is downloaded.
"""

from __future__ import annotations

import csv
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "examples"))
from build_models import VIBRATION_COLUMNS, VIBRATION_LABELS, vibration_signal  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
IMAGE_SIZE = 16  # PNGs are 2x the model input so the daemon's resize path is exercised
WINDOW = 32


@dataclass(frozen=True)
class Fixtures:
    root: Path
    cnn: Path  # Keras .keras: digits CNN, input [8, 8, 1], pixels / 255
    mlp: Path  # Keras .h5: digits MLP, input [64] in 0..1
    sensor: Path  # SavedModel folder: 1-D CNN on [32, 3] vibration windows
    calib_images: Path  # one subfolder per digit
    val_images: Path  # one subfolder per digit
    labels_txt: Path  # "zero" ... "nine"
    mlp_val_x: Path  # .npy [N, 64]
    mlp_val_y_csv: Path  # one digit per line
    mlp_calib_x: Path  # .npy [N, 64]
    sensor_calib_csv: Path
    sensor_val_csv: Path
    lstm: Path  # Keras .keras: untrained LSTM on [16, 3]; TF 2.21 segfaults calibrating it
    lstm_x: Path  # .npy [N, 16, 3]


DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def paths(root: Path) -> Fixtures:
    return Fixtures(
        root=root, cnn=root / "digits_cnn.keras", mlp=root / "digits_mlp.h5",
        sensor=root / "vibration_saved_model", calib_images=root / "calib",
        val_images=root / "val", labels_txt=root / "labels.txt",
        mlp_val_x=root / "mlp_val_x.npy", mlp_val_y_csv=root / "mlp_val_y.csv",
        mlp_calib_x=root / "mlp_calib_x.npy", sensor_calib_csv=root / "vibration_calib.csv",
        sensor_val_csv=root / "vibration_val.csv", lstm=root / "lstm.keras",
        lstm_x=root / "lstm_x.npy",
    )


def _write_digit_images(folder: Path, images: np.ndarray, labels: np.ndarray) -> None:
    for i, (image, label) in enumerate(zip(images, labels)):
        target = folder / str(label)
        target.mkdir(parents=True, exist_ok=True)
        pixels = np.rint(image * 255).astype(np.uint8)
        big = cv2.resize(pixels, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(target / f"{i:04d}.png"), big)


def _write_vibration_csv(path: Path, blocks: list[int], rng: np.random.Generator) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["t", *VIBRATION_COLUMNS, "label"])
        row = 0
        for label in blocks:
            for values in vibration_signal(label, 64, rng):
                writer.writerow([f"{row / 100:.2f}", *(f"{v:.4f}" for v in values),
                                 VIBRATION_LABELS[label]])
                row += 1


def build(root: Path) -> Fixtures:
    import tensorflow as tf
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    out = paths(root)
    root.mkdir(parents=True, exist_ok=True)
    tf.keras.utils.set_random_seed(0)
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., None]
    x_train, x_val, y_train, y_val = train_test_split(
        images, digits.target, test_size=0.2, random_state=0, stratify=digits.target
    )

    cnn = tf.keras.Sequential([
        tf.keras.Input((8, 8, 1), name="image"),
        tf.keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        tf.keras.layers.MaxPooling2D(),
        tf.keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(10, activation="softmax"),
    ])
    cnn.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    cnn.fit(x_train, y_train, epochs=25, batch_size=32, verbose=0)
    cnn.save(out.cnn)
    _write_digit_images(out.calib_images, x_train[:300], y_train[:300])
    _write_digit_images(out.val_images, x_val, y_val)
    out.labels_txt.write_text("\n".join(DIGIT_NAMES) + "\n")

    mlp = tf.keras.Sequential([
        tf.keras.Input((64,), name="features"),
        tf.keras.layers.Dense(32, activation="relu"),
        tf.keras.layers.Dense(10, activation="softmax"),
    ])
    mlp.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    mlp.fit(x_train.reshape(-1, 64), y_train, epochs=40, batch_size=32, verbose=0)
    mlp.save(out.mlp)
    np.save(out.mlp_val_x, x_val.reshape(-1, 64))
    np.save(out.mlp_calib_x, x_train[:200].reshape(-1, 64))
    out.mlp_val_y_csv.write_text("label\n" + "\n".join(str(v) for v in y_val) + "\n")

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 600)
    windows = np.stack([vibration_signal(int(k), WINDOW, rng) for k in labels])
    sensor = tf.keras.Sequential([
        tf.keras.Input((WINDOW, 3), name="window"),
        tf.keras.layers.Conv1D(8, 5, activation="relu"),
        tf.keras.layers.GlobalAveragePooling1D(),
        tf.keras.layers.Dense(3, activation="softmax"),
    ])
    sensor.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    sensor.fit(windows, labels, epochs=40, batch_size=32, verbose=0)
    sensor.export(out.sensor, verbose=False)
    _write_vibration_csv(out.sensor_calib_csv, [0, 1, 2, 2, 1, 0], rng)
    _write_vibration_csv(out.sensor_val_csv, [2, 0, 1, 0, 2, 1, 1, 2, 0], rng)

    # A graph the converter crashes on (full-int8 calibration of a Keras 3 LSTM, TF 2.21): the
    # real thing for the crash-handling tests. Weights do not matter, so it is not trained.
    lstm = tf.keras.Sequential([
        tf.keras.Input((16, 3), name="window"),
        tf.keras.layers.LSTM(8),
        tf.keras.layers.Dense(3, activation="softmax"),
    ])
    lstm.save(out.lstm)
    np.save(out.lstm_x, rng.random((20, 16, 3), dtype=np.float32))
    return out


if __name__ == "__main__":
    print(build(Path(sys.argv[1])))
