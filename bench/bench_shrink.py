"""Pruning and distillation against the model as given, in one edge-convert --compare run.

    python bench/bench_shrink.py [--case digits32|mobilenet96] [--prune SPARSITY] [OUT_DIR]

digits32 (default): trains a digits CNN at 32x32 (scikit-learn's digits, upscaled; about 360k
parameters), then runs `edge-convert MODEL --compare --prune 0.8 --student mobilenet:0.25` on
it: every quantization mode of the model, of its 80%-pruned copy (fine-tuned on the training
half) and of a MobileNet-style student (width 0.25, about 17x fewer parameters) distilled on the
unlabeled training inputs.

mobilenet96: a model big enough for latency to matter, shaped the way XNNPACK's sparse inference
needs (see converters/prune.py): a MobileNet-style network (width 0.5, about 0.35M parameters,
96x96 RGB input), a 3x3 stride-2 first convolution on the 3 color channels with padding 1,
depthwise-separable blocks, global average pooling. Trained on colored digits
(scikit-learn's digits upscaled 12x, a random foreground and background color each), then
`edge-convert MODEL --compare --prune SPARSITY` (0.8 unless --prune says otherwise).

Prints edge-convert's table (size, gzip, accuracy on the held-out 30%, agreement with the model,
latency with and without XNNPACK on ai-edge-litert, tflite-runtime's latency in the runtimes
column, one thread) and writes the report and plot to OUT_DIR.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def digits(size: int, colored: bool) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 digits upscaled to size x size; gray, or a random color pair each."""
    from sklearn.datasets import load_digits

    data = load_digits()
    scale = size // 8
    gray = (data.images / 16.0).astype(np.float32).repeat(scale, 1).repeat(scale, 2)[..., None]
    if not colored:
        return gray, data.target
    rng = np.random.default_rng(0)
    ink = rng.uniform(0.5, 1.0, (len(gray), 1, 1, 3)).astype(np.float32)
    paper = rng.uniform(0.0, 0.4, (len(gray), 1, 1, 3)).astype(np.float32)
    return gray * ink + (1.0 - gray) * paper, data.target


def digits_cnn() -> Any:
    import keras

    return keras.Sequential([
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


# Keras' 0.99 needs ~500 steps before the moving statistics serve inference: 40 steps an epoch
# here kept the validation accuracy at 10% for 14 epochs.
BN_MOMENTUM = 0.9
# MobileNet v1's depthwise-separable blocks: (pointwise filters at width 1, stride).
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
          (1024, 2))


def mobilenet96(alpha: float = 0.5) -> Any:
    """MobileNet-style, laid out as XNNPACK's sparse inference wants it (explicit padding 1
    before each stride-2 convolution, so TFLite gets PAD + VALID, which XNNPACK fuses)."""
    import keras

    layers = keras.layers

    def conv_bn(x: Any, filters: int, kernel: int, stride: int) -> Any:
        if stride == 2:
            x = layers.ZeroPadding2D(1)(x)
        x = layers.Conv2D(filters, kernel, strides=stride, use_bias=False,
                          padding="valid" if stride == 2 or kernel == 1 else "same")(x)
        return layers.ReLU()(layers.BatchNormalization(momentum=BN_MOMENTUM)(x))

    def depthwise_bn(x: Any, stride: int) -> Any:
        if stride == 2:
            x = layers.ZeroPadding2D(1)(x)
        x = layers.DepthwiseConv2D(3, strides=stride, use_bias=False,
                                   padding="valid" if stride == 2 else "same")(x)
        return layers.ReLU()(layers.BatchNormalization(momentum=BN_MOMENTUM)(x))

    inputs = keras.Input((96, 96, 3))
    x = conv_bn(inputs, int(32 * alpha), 3, 2)
    for filters, stride in BLOCKS:
        x = conv_bn(depthwise_bn(x, stride), int(filters * alpha), 1, 1)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(10, activation="softmax")(x))


CASES = {
    # case: (model builder, image size, colored, training epochs)
    "digits32": (digits_cnn, 32, False, 10),
    "mobilenet96": (mobilenet96, 96, True, 15),
}


def build(out: Path, case: str) -> dict[str, Path]:
    import keras
    from sklearn.model_selection import train_test_split

    make, size, colored, epochs = CASES[case]
    keras.utils.set_random_seed(0)
    images, labels = digits(size, colored)
    x_train, x_val, y_train, y_val = train_test_split(
        images, labels, test_size=0.3, random_state=0, stratify=labels)
    model = make()
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=epochs, batch_size=32, verbose=0)
    _, accuracy = model.evaluate(x_val, y_val, verbose=0)
    paths = {"model": out / f"{case}.keras", "train": out / "train.npz",
             "inputs": out / "unlabeled.npy", "val": out / "val.npz"}
    model.save(paths["model"])
    np.savez(paths["train"], x=x_train, y=y_train)
    np.save(paths["inputs"], x_train)  # the student sees inputs only
    np.savez(paths["val"], x=x_val, y=y_val)
    print(f"{case}: {model.count_params()} parameters, Keras accuracy {accuracy:.2%}", flush=True)
    return paths


def main(argv: list[str]) -> int:
    from converters.cli import main as edge_convert

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", nargs="?", type=Path)
    parser.add_argument("--case", choices=CASES, default="digits32")
    parser.add_argument("--prune", type=float, default=0.8)
    args = parser.parse_args(argv)
    out = args.out_dir or Path(tempfile.mkdtemp(prefix=f"bench-shrink-{args.case}-"))
    out.mkdir(parents=True, exist_ok=True)
    paths = build(out, args.case)
    student = (["--student", "mobilenet:0.25", "--inputs", str(paths["inputs"])]
               if args.case == "digits32" else [])
    return edge_convert([
        str(paths["model"]), "--compare", "--prune", str(args.prune),
        "--train-data", str(paths["train"]), *student,
        "--calibration-data", str(paths["inputs"]), "--validation-data", str(paths["val"]),
        "--report", str(out / "report.json"), "--plot", str(out / "compare.png"),
        "--no-progress",
    ])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
