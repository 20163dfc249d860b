"""Build (once) the MobileNet-size model and the inputs the benchmarks use; nothing is downloaded.

MobileNetV2 (224x224x3, 1000 classes) with random weights: the same graph, tensor sizes and
operator mix as the real model, so invoke time is representative; the scores are meaningless,
which does not matter for throughput. Converted to full-int8 (uint8 in/out like Coral-style
models). Cached under bench/.cache/ (git-ignored; ~4 MB), rebuilt only when missing.

    python bench/build_bench_model.py            # prints the cached model's path
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / "bench" / ".cache"
MOBILENET = CACHE / "mobilenet_v2_int8.tflite"
IMAGE_COUNT = 200
IMAGE_SIZE = (640, 480)  # width, height: a typical camera frame, decoded per frame like a camera

logger = logging.getLogger("bench")


def build_mobilenet(path: Path = MOBILENET) -> Path:
    if path.is_file():
        return path
    sys.path.insert(0, str(REPO))
    import tensorflow as tf

    from converters.metadata_writer import embed_metadata
    from edge_runtime.model.metadata import ModelMetadata

    logger.info("building %s (MobileNetV2, random weights, int8); takes a minute", path)
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3))
    rng = np.random.default_rng(0)

    def representative():  # calibration on [-1, 1] noise: MobileNet's input range
        for _ in range(8):
            yield [rng.uniform(-1, 1, (1, 224, 224, 3)).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
    data = converter.convert()
    metadata = ModelMetadata(
        task="classification",
        labels=tuple(f"class{i}" for i in range(1000)),
        preprocess={"color": "rgb", "resize": "stretch", "mean": [127.5], "std": [127.5],
                    "layout": "nhwc"},
        postprocess={"top_k": 3},
        source={"framework": "keras", "dataset": "none (random weights, benchmark only)"},
        converter={"name": "bench/build_bench_model.py"},
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(embed_metadata(data, metadata))
    logger.info("wrote %s (%d bytes)", path, path.stat().st_size)
    return path


def build_images(folder: Path = CACHE / "frames", count: int = IMAGE_COUNT) -> Path:
    """JPEG camera-size frames (smooth gradients + noise so they decode like photos)."""
    import cv2

    if folder.is_dir() and len(list(folder.glob("*.jpg"))) == count:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    width, height = IMAGE_SIZE
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for i in range(count):
        base = np.stack([(xx + 3 * i) % 256, (yy + 5 * i) % 256, (xx + yy) / 4 % 256], axis=-1)
        noisy = base + rng.normal(0, 12, base.shape)
        cv2.imwrite(str(folder / f"frame_{i:04d}.jpg"), np.clip(noisy, 0, 255).astype(np.uint8),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(build_mobilenet())
    print(build_images())
    return 0


if __name__ == "__main__":
    sys.exit(main())
