"""Confidence escalation on the digits task: a small model always, a large one only when unsure.

    .venv/bin/python bench/bench_escalation.py [--thresholds 0.5 0.8 0.9 0.95 0.99] [--rounds 3]

Trains two CNNs on scikit-learn's 8x8 digits with the same split as examples/build_models.py (the
'convert' and 'test' extras: TensorFlow, scikit-learn): a small one (one 4-filter convolution) and
a large one (the digits upsampled to 32x32 inside the model, four convolutions up to 64 filters,
a 128-unit dense layer). Both are written as float32 .tflite files with the examples' metadata
into bench/.cache/ (reused when present). Then every held-out digit goes through the daemon's own
code: a pipeline of the small model, with `[pipelines.escalate]` naming the large one, assembled
by the daemon's assembly, preprocessed, invoked, post-processed and escalated by cascade.py.
Printed in one run: accuracy and mean time per digit (preprocess + invoke + post-process of
whichever models ran, best of `--rounds`) for the small model alone, the large one alone and
the pair at each threshold, plus the share of digits escalated.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "examples"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from edge_runtime.app_config import load_config  # noqa: E402
from edge_runtime.pipeline.assembly import PipelineParts, assemble  # noqa: E402
from edge_runtime.pipeline.cascade import CascadeStats  # noqa: E402
from edge_runtime.sources.base import Frame  # noqa: E402

CACHE = REPO / "bench" / ".cache"
SMALL = CACHE / "digits_small.tflite"
LARGE = CACHE / "digits_large.tflite"


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., None]
    return train_test_split(images, digits.target, test_size=0.25, random_state=0,
                            stratify=digits.target)


def build_models() -> None:
    """Train and write the two models (a minute or so on two cores)."""
    import tensorflow as tf
    from build_models import DIGIT_LABELS, _convert, _seed, _write

    from edge_runtime.model.metadata import ModelMetadata

    x_train, x_test, y_train, y_test = digits_split()
    layers = tf.keras.layers
    specs = {
        SMALL: [layers.Conv2D(4, 3, padding="same", activation="relu"), layers.MaxPooling2D(),
                layers.Flatten(), layers.Dense(10, activation="softmax")],
        LARGE: [layers.UpSampling2D(4, interpolation="bilinear"),
                layers.Conv2D(32, 3, padding="same", activation="relu"),
                layers.Conv2D(32, 3, padding="same", activation="relu"), layers.MaxPooling2D(),
                layers.Conv2D(64, 3, padding="same", activation="relu"),
                layers.Conv2D(64, 3, padding="same", activation="relu"), layers.MaxPooling2D(),
                layers.Flatten(), layers.Dropout(0.3), layers.Dense(128, activation="relu"),
                layers.Dense(10, activation="softmax")],
    }
    CACHE.mkdir(parents=True, exist_ok=True)
    for path, body in specs.items():
        _seed(0)
        model = tf.keras.Sequential([tf.keras.Input((8, 8, 1), name="image"), *body])
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(x_train, y_train, epochs=30, batch_size=32, verbose=0)
        logging.info("%s: keras test accuracy %.4f, %d parameters", path.name,
                     model.evaluate(x_test, y_test, verbose=0)[1], model.count_params())
        metadata = ModelMetadata(
            task="classification", labels=tuple(DIGIT_LABELS),
            preprocess={"color": "gray", "resize": "stretch", "mean": [0.0], "std": [255.0],
                        "layout": "nhwc"},
            postprocess={"top_k": 3},
            source={"framework": "keras", "dataset": "sklearn.datasets.load_digits"},
            converter={"name": "bench/bench_escalation.py"})
        _write(path, _convert(model, None, False), metadata)


def pipeline(workdir: Path, below: float) -> PipelineParts:
    config = workdir / "escalation.toml"
    config.write_text(
        f'[mqtt]\nhost = "127.0.0.1"\n[[pipelines]]\nname = "digits"\n'
        f'[pipelines.source]\ntype = "images"\npath = "{workdir}"\n'
        f'[pipelines.model]\npath = "{SMALL}"\nthreads = 1\n'
        f'[pipelines.escalate]\nbelow = {below}\n'
        f'[pipelines.escalate.model]\npath = "{LARGE}"\nthreads = 1\n')
    app = load_config(config)
    return assemble(app.pipelines[0], app)


def answer(parts: PipelineParts, frame: Frame) -> dict:
    geometry = parts.model.fill_input(lambda out: parts.preprocess(frame, out))
    parts.model.invoke()
    return parts.postprocess([parts.model.output(i) for i in range(len(parts.model.outputs))],
                             geometry)


def measure(run, frames: list[Frame], labels: np.ndarray, rounds: int) -> tuple[float, float]:
    """(accuracy, mean ms per digit, best of `rounds` passes)."""
    best = float("inf")
    for _ in range(rounds):
        correct = 0
        t0 = time.perf_counter()
        for frame, label in zip(frames, labels):
            correct += run(frame)["classes"][0]["index"] == label
        best = min(best, (time.perf_counter() - t0) / len(frames) * 1e3)
    return correct / len(frames), best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--thresholds", type=float, nargs="+",
                        default=[0.5, 0.7, 0.8, 0.9, 0.95, 0.99])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rebuild", action="store_true", help="train the models again")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if args.rebuild or not (SMALL.exists() and LARGE.exists()):
        logging.getLogger().setLevel(logging.INFO)
        build_models()
        logging.getLogger().setLevel(logging.WARNING)
    _, x_test, _, y_test = digits_split()
    # The device sees 8-bit gray pixels: value * 255, as examples/digits/samples are written.
    frames = [Frame(np.rint(x[:, :, 0] * 255).astype(np.uint8), i) for i, x in enumerate(x_test)]
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        base = pipeline(Path(tmp), 0.0)
        small, large = base, base.cascade.escalation.parts
        rows.append(("small alone", *measure(lambda f: answer(small, f), frames, y_test,
                                             args.rounds), 0.0))
        rows.append(("large alone", *measure(lambda f: answer(large, f), frames, y_test,
                                             args.rounds), 1.0))
        for below in args.thresholds:
            parts = pipeline(Path(tmp), below)
            cascade = parts.cascade
            stats = CascadeStats()

            def pair(frame: Frame) -> dict:
                fields, _ = cascade.escalate(frame, answer(parts, frame), {}, {}, stats)
                return fields

            accuracy, ms = measure(pair, frames, y_test, args.rounds)
            rows.append((f"pair, below {below}", accuracy, ms,
                         stats.escalations / max(stats.escalation_checks, 1)))
    large_ms = rows[1][2]
    print(f"digits: {len(frames)} held-out images; small {SMALL.stat().st_size} B, "
          f"large {LARGE.stat().st_size} B; best of {args.rounds} passes, 1 thread each")
    print(f"{'':>18} | {'accuracy':>8} | {'ms/digit':>8} | {'x large':>7} | escalated")
    for name, accuracy, ms, escalated in rows:
        print(f"{name:>18} | {100 * accuracy:7.2f}% | {ms:8.4f} | {ms / large_ms:7.2f} | "
              f"{100 * escalated:5.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
