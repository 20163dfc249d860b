"""Build (once) the MobileNet-size model and the inputs the benchmarks use; nothing is downloaded.

MobileNetV2 (224x224x3, 1000 classes) with random weights: the same graph, tensor sizes and
operator mix as the real model, so invoke time is representative; the scores are meaningless,
which does not matter for throughput. Converted to full-int8 (uint8 in/out like Coral-style
models) and to float32. Inputs: 640x480 JPEG frames and a looping 720x528 MPEG-4 video. Cached
under bench/.cache/ (git-ignored; ~20 MB), rebuilt only when missing.

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
MOBILENET_FLOAT = CACHE / "mobilenet_v2_float.tflite"
IMAGE_COUNT = 200
IMAGE_SIZE = (640, 480)  # width, height: a typical camera frame, decoded per frame like a camera
VIDEO = CACHE / "street_720x528.mp4"
VIDEO_SIZE = (720, 528)  # width, height of the looping video the float32 case used
VIDEO_FRAMES = 300

logger = logging.getLogger("bench")


def build_mobilenet(path: Path = MOBILENET, quantized: bool = True) -> Path:
    """MobileNetV2 224x224, full-int8 (uint8 in/out) or, with `quantized=False`, float32."""
    if path.is_file():
        return path
    sys.path.insert(0, str(REPO))
    import tensorflow as tf

    from converters.metadata_writer import embed_metadata
    from edge_runtime.model.metadata import ModelMetadata

    logger.info("building %s (MobileNetV2, random weights, %s); takes a minute", path,
                "int8" if quantized else "float32")
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3))
    rng = np.random.default_rng(0)

    def representative():  # calibration on [-1, 1] noise: MobileNet's input range
        for _ in range(8):
            yield [rng.uniform(-1, 1, (1, 224, 224, 3)).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantized:
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


def build_mobilenet_float(path: Path = MOBILENET_FLOAT) -> Path:
    return build_mobilenet(path, quantized=False)


def build_video(path: Path = VIDEO, frames: int = VIDEO_FRAMES) -> Path:
    """A camera-like MPEG-4 video (moving gradients, shapes and sensor noise), decoded per frame
    by OpenCV's FFmpeg backend as the daemon's `video` source does."""
    import cv2

    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = VIDEO_SIZE
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    partial = path.with_suffix(".partial.mp4")
    writer = cv2.VideoWriter(str(partial), cv2.VideoWriter_fourcc(*"mp4v"), 30, (width, height))
    if not writer.isOpened():
        raise RuntimeError("OpenCV cannot write MPEG-4 video here")
    for i in range(frames):
        base = np.stack([(xx + 4 * i) % 256, (yy + 2 * i) % 256, (xx - yy + 3 * i) / 2 % 256],
                        axis=-1)
        frame = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
        cx, cy = (100 + 5 * i) % width, (150 + 3 * i) % height
        cv2.circle(frame, (cx, cy), 60, (40, 200, 90), -1)
        cv2.rectangle(frame, ((400 - 4 * i) % width, 300), ((400 - 4 * i) % width + 120, 420),
                      (220, 60, 60), -1)
        writer.write(frame)
    writer.release()
    partial.rename(path)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(build_mobilenet())
    print(build_mobilenet_float())
    print(build_images())
    print(build_video())
    return 0


if __name__ == "__main__":
    sys.exit(main())
