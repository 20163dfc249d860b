"""Build the detection test models: constant-output models for each layout, and a small real
detector trained on synthetic shapes.

    python examples/build_detection_models.py            # needs the 'convert' extra (TensorFlow)
    python examples/build_detection_models.py --only constants

Writes into tests/models/ (small, committed, so the tests need no TensorFlow):
  det_ssd_op.tflite      a real TFLite_Detection_PostProcess op over constant box encodings and
                         class scores (no metadata: the format is recognized from the outputs)
  det_ssd_plain.tflite   the same four tensors as plain constants, ordered scores, boxes, count,
                         classes (the TF2 export order)
  det_yolo_v8.tflite     one [1, 4+C, N] output, boxes in input pixels, no objectness
  det_yolo_v5.tflite     one [1, N, 5+C] output, normalized boxes, objectness
  det_anchors.tflite     MediaPipe-style regressors [1, 40, 8] + score logits [1, 40, 1]
  det_shapes.tflite      a CNN trained here on 64x64 images holding one square or disc, with a
                         YOLO-style head: [1, 64, 5+2] rows (cx, cy, w, h in pixels, objectness,
                         class scores), letterbox preprocessing in its metadata

Every constant model's outputs ignore the input's values (they add 0 * mean(input) so the
converter keeps the input), so tests know the exact decoded boxes. The values are spelled out
below and again, as expected results, in tests/test_detection_decoding.py.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

logger = logging.getLogger("build_detection_models")
REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "tests" / "models"

# The constant models take a 64 wide x 48 high RGB image, so a swapped width/height shows.
INPUT_SHAPE = (1, 48, 64, 3)

# ssd-postprocess: anchors (ycenter, xcenter, h, w); encodings are 0 so decoded box = anchor.
SSD_LABELS = ["person", "bicycle", "car"]
SSD_ANCHORS = np.array([
    [0.25, 0.25, 0.5, 0.5],  # person 0.9 -> ymin 0, xmin 0, ymax .5, xmax .5
    [0.5, 0.75, 0.2, 0.3],   # car 0.8 -> .4, .6, .6, .9
    [0.8, 0.3, 0.2, 0.2],    # bicycle 0.7 -> .7, .2, .9, .4
    [0.25, 0.25, 0.5, 0.5],  # person 0.6, the same box as the first: the op suppresses it
    [0.5, 0.5, 0.1, 0.1],    # person 0.3: passes the op (0.1) but not the default 0.5
    [0.1, 0.9, 0.1, 0.1],    # nothing
], np.float32)
SSD_SCORES = np.zeros((6, 4), np.float32)  # column 0 is the background class
SSD_SCORES[0, 1], SSD_SCORES[1, 3], SSD_SCORES[2, 2], SSD_SCORES[3, 1], SSD_SCORES[4, 1] = \
    0.9, 0.8, 0.7, 0.6, 0.3

# yolo v8 layout [1, 4+C, N]: rows of cx, cy, w, h (input pixels), C class scores; N = 10.
YOLO8_LABELS = ["cat", "dog", "bird"]
YOLO8_ROWS = np.zeros((10, 7), np.float32)
YOLO8_ROWS[:5] = [
    [16, 12, 16, 12, 0.9, 0.1, 0.0],  # cat 0.9: x 8..24, y 6..18
    [18, 12, 16, 12, 0.8, 0.0, 0.0],  # cat 0.8, IoU 0.78 with the first: suppressed
    [18, 12, 16, 12, 0.0, 0.7, 0.0],  # dog 0.7, same box: another class, kept
    [48, 36, 16, 12, 0.0, 0.0, 0.6],  # bird 0.6: x 40..56, y 30..42
    [32, 24, 8, 8, 0.3, 0.2, 0.1],    # cat 0.3: below 0.5
]
YOLO8_ROWS[5:, :2] = [[4, 4], [60, 4], [4, 44], [60, 44], [32, 24]]  # empty grid cells

# yolo v5 layout [1, N, 5+C]: cx, cy, w, h (normalized), objectness, C class scores; N = 8.
YOLO5_LABELS = ["person", "car"]
YOLO5_ROWS = np.zeros((8, 7), np.float32)
YOLO5_ROWS[:3] = [
    [0.5, 0.5, 0.25, 0.5, 0.9, 0.9, 0.1],    # person 0.81: .375, .25, .625, .75
    [0.25, 0.25, 0.1, 0.1, 0.8, 0.25, 0.75],  # car 0.6: .2, .2, .3, .3
    [0.75, 0.5, 0.2, 0.2, 0.4, 1.0, 0.0],     # person 0.4
]

# anchors: 32x32 input, strides [8, 16], fixed anchor size, 2 anchors per cell -> 40 anchors;
# regressors x, y, w, h, kp0 x, y, kp1 x, y scaled by 32; score logits.
ANCHOR_INPUT = (1, 32, 32, 3)
ANCHOR_OPTIONS = {"format": "anchors", "strides": [8, 16], "fixed_anchor_size": True,
                  "aspect_ratios": [1.0], "interpolated_scale_aspect_ratio": 1.0}
ANCHOR_REGS = np.zeros((40, 8), np.float32)
ANCHOR_LOGITS = np.full((40, 1), -10.0, np.float32)
# anchor 10: layer 0, row 1, col 1 -> center (.375, .375)
ANCHOR_REGS[10] = [3.2, -1.6, 8.0, 6.4, 0.0, 0.0, 6.4, 3.2]
ANCHOR_LOGITS[10] = 2.0
# anchor 11: same cell, box shifted right by .05: IoU .67 with anchor 10, suppressed
ANCHOR_REGS[11] = [4.8, -1.6, 8.0, 6.4, 0.0, 0.0, 6.4, 3.2]
ANCHOR_LOGITS[11] = 1.0
# anchor 37: layer 1, row 1, col 0 -> center (.25, .75)
ANCHOR_REGS[37] = [0.0, 0.0, 16.0, 8.0, 0.0, 0.0, -3.2, 0.0]
ANCHOR_LOGITS[37] = 0.5
ANCHOR_LOGITS[0] = -1.0  # 0.27: below the threshold

SHAPES_LABELS = ["square", "disc"]
SHAPES_SIZE = 64
SHAPES_STRIDE = 8


def _seed(seed: int) -> None:
    import tensorflow as tf

    np.random.seed(seed)
    tf.keras.utils.set_random_seed(seed)


def _convert(module, function, custom_ops: bool = False) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function()], module)
    converter.allow_custom_ops = custom_ops  # TFLite_Detection_PostProcess is a "custom" op
    return converter.convert()


def _write(path: Path, model_bytes: bytes, metadata=None) -> None:
    from converters.metadata_writer import embed_metadata

    if metadata is not None:
        model_bytes = embed_metadata(model_bytes, metadata)
    path.write_bytes(model_bytes)
    logger.info("wrote %s (%d bytes)", path, len(model_bytes))


def _constant_module(shape: tuple[int, ...], make):
    """A tf.Module whose `run(image)` returns make(zero), zero being 0 * mean(image)."""
    import tensorflow as tf

    class Constant(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32, name="image")])
        def run(self, image):
            return make(tf.reduce_mean(image) * 0.0)

    module = Constant()
    return module, module.run


def _ssd_op_signature(max_detections: int, num_classes: int) -> str:
    """What TF's object detection export puts in experimental_implements to get the fused op."""
    attrs = {"max_detections": ("i", max_detections), "max_classes_per_detection": ("i", 1),
             "use_regular_nms": ("b", "false"), "nms_score_threshold": ("f", 0.1),
             "nms_iou_threshold": ("f", 0.5), "y_scale": ("f", 10.0), "x_scale": ("f", 10.0),
             "h_scale": ("f", 5.0), "w_scale": ("f", 5.0), "num_classes": ("i", num_classes)}
    parts = ['name: "TFLite_Detection_PostProcess"']
    parts += [f'attr {{ key: "{k}" value {{ {t}: {v} }} }}' for k, (t, v) in attrs.items()]
    return " ".join(parts)


def build_constants(out: Path) -> None:
    import tensorflow as tf

    from edge_runtime.model.metadata import ModelMetadata

    @tf.function(experimental_implements=_ssd_op_signature(5, len(SSD_LABELS)))
    def detection_postprocess(box_encodings, class_predictions, anchors):
        # A stand-in body: the converter replaces the whole function by the fused TFLite op.
        return (tf.constant(0.0, name="boxes"), tf.constant(0.0, name="classes"),
                tf.constant(0.0, name="scores"), tf.constant(0.0, name="num_detections"))

    module, fn = _constant_module(INPUT_SHAPE, lambda zero: detection_postprocess(
        tf.zeros((1, len(SSD_ANCHORS), 4)) + zero, tf.constant(SSD_SCORES[None]) + zero,
        tf.constant(SSD_ANCHORS)))
    _write(out / "det_ssd_op.tflite", _convert(module, fn, custom_ops=True))

    # What the op outputs for the constants above, as four plain tensors in the TF2 order.
    boxes = np.zeros((1, 5, 4), np.float32)
    boxes[0, :4] = [[0, 0, .5, .5], [.4, .6, .6, .9], [.7, .2, .9, .4], [.45, .45, .55, .55]]
    module, fn = _constant_module(INPUT_SHAPE, lambda zero: (
        tf.constant([[0.9, 0.8, 0.7, 0.3, 0.0]]) + zero, tf.constant(boxes) + zero,
        tf.constant([4.0]) + zero, tf.constant([[0.0, 2.0, 1.0, 0.0, 0.0]]) + zero))
    _write(out / "det_ssd_plain.tflite", _convert(module, fn),
           ModelMetadata(task="detection", labels=tuple(SSD_LABELS)))

    module, fn = _constant_module(INPUT_SHAPE, lambda zero: tf.constant(YOLO8_ROWS.T[None]) + zero)
    _write(out / "det_yolo_v8.tflite", _convert(module, fn),
           ModelMetadata(task="detection", labels=tuple(YOLO8_LABELS),
                         postprocess={"format": "yolo"}))

    module, fn = _constant_module(INPUT_SHAPE, lambda zero: tf.constant(YOLO5_ROWS[None]) + zero)
    _write(out / "det_yolo_v5.tflite", _convert(module, fn),
           ModelMetadata(task="detection", labels=tuple(YOLO5_LABELS),
                         postprocess={"format": "yolo"}))

    module, fn = _constant_module(ANCHOR_INPUT, lambda zero: {
        "regressors": tf.constant(ANCHOR_REGS[None]) + zero,
        "classificators": tf.constant(ANCHOR_LOGITS[None]) + zero})
    _write(out / "det_anchors.tflite", _convert(module, fn),
           ModelMetadata(task="detection", labels=("face",), postprocess=ANCHOR_OPTIONS))


def shapes_sample(rng: np.random.Generator, size: int = SHAPES_SIZE
                  ) -> tuple[np.ndarray, int, tuple[float, float, float, float]]:
    """(RGB uint8 image, class, (xmin, ymin, xmax, ymax) in pixels): one square or disc on a
    noisy background, half the time between black letterbox bars like the daemon adds."""
    import cv2

    image = np.empty((size, size, 3), np.uint8)
    image[:] = rng.integers(0, 256, 3)
    image = np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)
    top, bottom, left, right = 0, size, 0, size
    if rng.random() < 0.5:
        bar = int(rng.integers(4, 20))
        if rng.random() < 0.5:
            image[:bar], image[size - bar:] = 0, 0
            top, bottom = bar, size - bar
        else:
            image[:, :bar], image[:, size - bar:] = 0, 0
            left, right = bar, size - bar
    side = int(rng.integers(10, min(31, bottom - top, right - left)))
    x0 = int(rng.integers(left, right - side + 1))
    y0 = int(rng.integers(top, bottom - side + 1))
    color = rng.integers(0, 256, 3)
    while np.abs(color - image[(top + bottom) // 2, (left + right) // 2]).sum() < 150:
        color = rng.integers(0, 256, 3)  # keep the shape visible against the background
    label = int(rng.integers(0, 2))
    if label == 0:
        cv2.rectangle(image, (x0, y0), (x0 + side - 1, y0 + side - 1), color.tolist(), -1)
    else:
        radius = side / 2
        cv2.circle(image, (round((x0 + radius) * 16), round((y0 + radius) * 16)),
                   int(round((radius - 0.5) * 16)), color.tolist(), -1, cv2.LINE_AA, shift=4)
    return image, label, (x0, y0, x0 + side, y0 + side)


def _shapes_data(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Images (float 0-1) and grid targets [8, 8, 1 + 4 + 2]: objectness, center offset, size / 64
    and one-hot class at the cell holding the box center and at its two nearest neighbours (the
    YOLOv5 assignment: three cells learn each box, so a center near a cell border is not lost)."""
    grid = SHAPES_SIZE // SHAPES_STRIDE
    images = np.empty((count, SHAPES_SIZE, SHAPES_SIZE, 3), np.float32)
    targets = np.zeros((count, grid, grid, 5 + len(SHAPES_LABELS)), np.float32)
    for i in range(count):
        image, label, (x0, y0, x1, y1) = shapes_sample(rng)
        images[i] = image / 255.0
        cx, cy = (x0 + x1) / 2 / SHAPES_STRIDE, (y0 + y1) / 2 / SHAPES_STRIDE
        col, row = min(int(cx), grid - 1), min(int(cy), grid - 1)
        cells = [(row, col), (row, col - 1 if cx - col < 0.5 else col + 1),
                 (row - 1 if cy - row < 0.5 else row + 1, col)]
        for r, c in cells:
            if 0 <= r < grid and 0 <= c < grid:
                # offsets from the cell corner lie in (-0.5, 1.5): stored as (offset + 0.5) / 2
                targets[i, r, c, :5] = [1.0, (cx - c + 0.5) / 2, (cy - r + 0.5) / 2,
                                        (x1 - x0) / SHAPES_SIZE, (y1 - y0) / SHAPES_SIZE]
                targets[i, r, c, 5 + label] = 1.0
    return images, targets


def grid_decode_layer():
    """A Keras layer: head logits [B, 8, 8, 5+C] -> YOLO rows [B, 64, 5+C] (cx, cy, w, h in
    input pixels, objectness, class probabilities)."""
    import keras
    from keras import ops

    grid = SHAPES_SIZE // SHAPES_STRIDE
    cols, rows = np.meshgrid(np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32))
    offsets = np.stack([cols, rows], axis=-1)[None]  # [1, 8, 8, 2]: (col, row) of each cell

    class GridDecode(keras.layers.Layer):
        def call(self, raw):
            centers = (ops.sigmoid(raw[..., 1:3]) * 2.0 - 0.5 + offsets) * SHAPES_STRIDE
            sizes = ops.sigmoid(raw[..., 3:5]) * SHAPES_SIZE
            decoded = ops.concatenate([centers, sizes, ops.sigmoid(raw[..., :1]),
                                       ops.softmax(raw[..., 5:], axis=-1)], axis=-1)
            return ops.reshape(decoded, (-1, grid * grid, 5 + len(SHAPES_LABELS)))

    return GridDecode


def center_colors_layer():
    """A Keras layer: subtract each image's mean color, so the net sees shapes, not backgrounds."""
    import keras
    from keras import ops

    class CenterColors(keras.layers.Layer):
        def call(self, image):
            return image - ops.mean(image, axis=(1, 2), keepdims=True)

    return CenterColors


def _shapes_loss(y_true, y_pred):
    """Objectness everywhere; box (L1 + 1 - IoU) and class only where objectness is 1."""
    import tensorflow as tf

    obj = y_true[..., 0]
    obj_loss = tf.nn.sigmoid_cross_entropy_with_logits(labels=obj, logits=y_pred[..., 0])
    obj_loss = tf.reduce_sum(obj_loss * (1.0 + 4.0 * obj), axis=[1, 2])  # few positives: weigh up
    box = tf.sigmoid(y_pred[..., 1:5])
    l1 = tf.reduce_sum(tf.abs(box - y_true[..., 1:5]), axis=-1)
    cells = SHAPES_SIZE / SHAPES_STRIDE

    def corners(encoded):  # in cell units, relative to the same cell corner
        center = encoded[..., 0:2] * 2.0 - 0.5
        half = encoded[..., 2:4] * cells / 2.0
        return center - half, center + half

    (p0, p1), (t0, t1) = corners(box), corners(y_true[..., 1:5])
    inter = tf.reduce_prod(tf.maximum(tf.minimum(p1, t1) - tf.maximum(p0, t0), 0.0), axis=-1)
    union = tf.reduce_prod(p1 - p0, axis=-1) + tf.reduce_prod(t1 - t0, axis=-1) - inter
    iou = inter / tf.maximum(union, 1e-6)
    class_loss = tf.nn.softmax_cross_entropy_with_logits(labels=y_true[..., 5:],
                                                         logits=y_pred[..., 5:])
    per_cell = 4.0 * l1 + 4.0 * (1.0 - iou) + 4.0 * class_loss
    return obj_loss + tf.reduce_sum(obj * per_cell, axis=[1, 2])


def build_shapes(out: Path, samples: int, epochs: int) -> None:
    import tensorflow as tf

    from edge_runtime.model.metadata import ModelMetadata

    _seed(2)
    rng = np.random.default_rng(2)
    layers = tf.keras.layers
    inputs = tf.keras.Input((SHAPES_SIZE, SHAPES_SIZE, 3), name="image")
    x = center_colors_layer()()(inputs)
    for filters, stride in [(16, 2), (32, 2), (32, 2), (32, 1), (32, 1), (32, 1)]:
        x = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
    head = layers.Conv2D(5 + len(SHAPES_LABELS), 1, name="head")(x)  # [8, 8, 7] logits
    model = tf.keras.Model(inputs, head)
    batch = 32
    schedule = tf.keras.optimizers.schedules.CosineDecay(
        3e-3, decay_steps=epochs * (samples // batch), alpha=0.05)
    model.compile(tf.keras.optimizers.Adam(schedule), _shapes_loss)
    started, cpu = time.monotonic(), time.process_time()
    losses = []
    for _ in range(epochs):  # fresh images every epoch: with a fixed set the centers overfit
        images, targets = _shapes_data(samples, rng)
        losses += model.fit(images, targets, epochs=1, batch_size=batch, verbose=0).history["loss"]
    logger.info("trained the shapes detector on %d x %d images in %.1f s (%.1f s CPU; loss %s)",
                epochs, samples, time.monotonic() - started, time.process_time() - cpu,
                " ".join(f"{v:.3g}" for v in losses))

    # The YOLO-style head as the model's last layer: [1, 64, 5+C] rows in input pixels.
    export = tf.keras.Model(inputs, grid_decode_layer()()(head))

    metadata = ModelMetadata(
        task="detection",
        labels=tuple(SHAPES_LABELS),
        preprocess={"color": "rgb", "resize": "letterbox", "mean": [0.0], "std": [255.0]},
        postprocess={"format": "yolo", "threshold": 0.5, "iou_threshold": 0.45},
        source={"framework": "keras", "dataset": "synthetic shapes "
                "(examples/build_detection_models.py)"},
        converter={"name": "examples/build_detection_models.py"},
    )
    converter = tf.lite.TFLiteConverter.from_keras_model(export)
    _write(out / "det_shapes.tflite", converter.convert(), metadata)

    logger.info("shapes detector: %d/200 fresh images found with IoU >= 0.5 and the right class",
                _score_shapes(out / "det_shapes.tflite", 200))


def _score_shapes(path: Path, count: int) -> int:
    """Fresh images through the .tflite file and the daemon's own decoding (threshold, NMS)."""
    from edge_runtime.model.runtime import select_runtime
    from edge_runtime.model.tflite_model import TfliteModel
    from edge_runtime.postprocessing.base import TaskContext
    from edge_runtime.postprocessing.detection import DetectionOptions, Detector
    from edge_runtime.preprocessing.geometry import Geometry

    model = TfliteModel(path, select_runtime("auto"))
    detector = Detector(DetectionOptions(format="yolo"),
                        TaskContext(tuple(model.outputs), tuple(model.metadata.labels),
                                    model.inputs[0].shape))
    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(count):
        image, label, box = shapes_sample(rng)
        model.set_input(0, (image / 255.0).astype(np.float32)[None])
        model.invoke()
        found = detector([model.output(0)], Geometry.identity(SHAPES_SIZE, SHAPES_SIZE))
        if found["detections"]:
            best = found["detections"][0]
            got = np.array([best["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")])
            hits += best["index"] == label and _iou(got * SHAPES_SIZE, np.array(box)) >= 0.5
    return hits


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="folder to write the models into")
    parser.add_argument("--only", choices=["constants", "shapes"], help="build just one group")
    parser.add_argument("--samples", type=int, default=2500, help="shapes images per epoch")
    parser.add_argument("--epochs", type=int, default=15, help="shapes training epochs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.only in (None, "constants"):
        build_constants(args.out)
    if args.only in (None, "shapes"):
        build_shapes(args.out, args.samples, args.epochs)


if __name__ == "__main__":
    main()
