"""Our face detection against MediaPipe's own solution, frame by frame, on a real video.

Runs in the bench-only virtualenv that has mediapipe 0.10.21 (never a daemon dependency):

    bash deploy/mediapipe-venv.sh          # once: .venv-mediapipe, and Debian's opencv-doc video
    .venv-mediapipe/bin/python bench/bench_face_parity.py [--video FILE] [--nms greedy weighted]

Both sides run the same file, MediaPipe's short-range BlazeFace (`face_detection_short_range.tflite`
from the mediapipe wheel): MediaPipe through `mp.solutions.face_detection` (its own graph: letterbox
to 128x128, anchors, sigmoid, weighted NMS at IoU 0.3, letterbox removal), ours through the
daemon's config loader, pipeline assembly, preprocessing, interpreter and detection task, with the
anchors options of MediaPipe's graph. For each frame the two sets of boxes are matched greedily by
IoU; the report gives the median (and 5th percentile) IoU of matched boxes and the share of frames
where both found the same number of faces, for each NMS mode and each of the daemon's resize
modes `letterbox` and `letterbox-mediapipe`, plus `emulated`: the input resampled by this script
as MediaPipe does (mediapipe_input), which isolates the decoder and NMS from the resampling.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge_runtime.app_config import load_config  # noqa: E402
from edge_runtime.pipeline.assembly import PipelineParts, assemble  # noqa: E402
from edge_runtime.postprocessing.detection.nms import pairwise_iou  # noqa: E402
from edge_runtime.preprocessing.geometry import Geometry  # noqa: E402
from edge_runtime.sources.base import Frame  # noqa: E402

RESIZE = ("letterbox", "letterbox-mediapipe")  # the daemon's resize modes compared
VIDEO = Path("/usr/share/doc/opencv-doc/examples/data/Megamind.avi")  # Debian's opencv-doc

# MediaPipe's face_detection_short_range graph, in the daemon's option names.
SHORT_RANGE = """
[pipelines.preprocess]
color = "rgb"
resize = "{resize}"
mean = [127.5]
std = [127.5]
[pipelines.postprocess]
task = "detection"
format = "anchors"
labels = "{labels}"
threshold = 0.5
iou_threshold = 0.3
max_detections = 100
nms = "{nms}"
strides = [8, 16, 16, 16]
min_scale = 0.1484375
max_scale = 0.75
fixed_anchor_size = true
"""


def short_range_model() -> Path:
    import mediapipe

    return Path(mediapipe.__file__).parent / "modules/face_detection/face_detection_short_range.tflite"


def our_detector(model: Path, nms: str, workdir: Path, resize: str) -> PipelineParts:
    labels = workdir / "labels.txt"
    labels.write_text("face\n")
    config = workdir / f"parity-{nms}-{resize}.toml"
    config.write_text(
        f'[mqtt]\nhost = "127.0.0.1"\n[[pipelines]]\nname = "faces"\n'
        f'[pipelines.source]\ntype = "images"\npath = "{workdir}"\n'
        f'[pipelines.model]\npath = "{model}"\nthreads = 1\n'
        + SHORT_RANGE.format(labels=labels, nms=nms, resize=resize))
    app = load_config(config)
    return assemble(app.pipelines[0], app)


def mediapipe_input(bgr: np.ndarray, out: np.ndarray) -> Geometry:
    """The input as MediaPipe's ImageToTensorCalculator (CPU) samples it: the frame padded to a
    centered square, mapped corner to corner (input x = frame x * 128 / side, no half-pixel
    centering, fractional padding) with a bilinear warp. Used to tell the decoder and NMS apart
    from the resampling in the comparison."""
    height, width = bgr.shape[:2]
    side = max(width, height)
    size = out.shape[2]
    s = size / side
    matrix = np.float32([[s, 0, (side - width) / 2 * s], [0, s, (side - height) / 2 * s]])
    rgb = cv2.warpAffine(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), matrix, (size, size),
                         flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    out[0] = (rgb.astype(np.float32) - 127.5) / 127.5
    return Geometry(width, height, size, size, 1 / s, 1 / s, -(side - width) / 2,
                    -(side - height) / 2)


def ours(parts: PipelineParts, bgr: np.ndarray, sampling: str) -> np.ndarray:
    if sampling == "emulated":
        geometry = parts.model.fill_input(lambda out: mediapipe_input(bgr, out))
    else:
        geometry = parts.model.fill_input(lambda out: parts.preprocess(Frame(bgr, 0), out))
    parts.model.invoke()
    outputs = [parts.model.output(i) for i in range(len(parts.model.outputs))]
    found = parts.postprocess(outputs, geometry)["detections"]
    return np.asarray([[d["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")] for d in found],
                      np.float64).reshape(-1, 4)


def theirs(solution: Any, bgr: np.ndarray) -> np.ndarray:
    result = solution.process(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    boxes = []
    for detection in result.detections or []:
        b = detection.location_data.relative_bounding_box
        boxes.append([b.xmin, b.ymin, b.xmin + b.width, b.ymin + b.height])
    return np.clip(np.asarray(boxes, np.float64).reshape(-1, 4), 0.0, 1.0)  # ours are clipped


def matched_ious(a: np.ndarray, b: np.ndarray) -> list[float]:
    """Greedy one-to-one matching by IoU, best pairs first (pairs with IoU 0 are not matches)."""
    if not len(a) or not len(b):
        return []
    iou = pairwise_iou(a, b)
    out = []
    while iou.size and iou.max() > 0:
        i, j = np.unravel_index(np.argmax(iou), iou.shape)
        out.append(float(iou[i, j]))
        iou[i, :], iou[:, j] = -1, -1
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--video", type=Path, default=VIDEO)
    parser.add_argument("--nms", nargs="+", default=["weighted", "greedy"])
    parser.add_argument("--frames", type=int, default=0, help="stop after this many (0 = all)")
    args = parser.parse_args()
    import mediapipe as mp

    if not args.video.exists():
        print(f"no video at {args.video}: apt-get install opencv-doc, or pass --video", file=sys.stderr)
        return 2
    model = short_range_model()
    with tempfile.TemporaryDirectory() as tmp:
        detectors = {(nms, resize): our_detector(model, nms, Path(tmp), resize)
                     for nms in args.nms for resize in RESIZE}
        solution = mp.solutions.face_detection.FaceDetection(model_selection=0,
                                                             min_detection_confidence=0.5)
        # ours: the daemon's preprocessing; mediapipe: the input resampled as MediaPipe does
        runs = [(nms, sampling) for sampling in (*RESIZE, "emulated") for nms in args.nms]
        ious: dict[tuple[str, str], list[float]] = {run: [] for run in runs}
        same: dict[tuple[str, str], int] = {run: 0 for run in runs}
        faces = 0
        frames = 0
        capture = cv2.VideoCapture(str(args.video))
        while not args.frames or frames < args.frames:
            ok, bgr = capture.read()
            if not ok:
                break
            frames += 1
            reference = theirs(solution, bgr)
            faces += len(reference)
            for nms, sampling in runs:
                parts = detectors[nms, "letterbox" if sampling == "emulated" else sampling]
                got = ours(parts, bgr, sampling)
                same[nms, sampling] += len(got) == len(reference)
                ious[nms, sampling] += matched_ious(got, reference)
        capture.release()
    print(f"video {args.video.name}: {frames} frames, {faces} faces found by mediapipe "
          f"{mp.__version__} (short range, min confidence 0.5)")
    print(f"{'resize':>19} | {'nms':>8} | {'median IoU':>10} | {'p5 IoU':>7} | "
          f"{'matched':>7} | same face count")
    for run in runs:
        values = np.asarray(ious[run]) if ious[run] else np.zeros(1)
        print(f"{run[1]:>19} | {run[0]:>8} | {np.median(values):10.4f} | "
              f"{np.percentile(values, 5):7.4f} | {len(ious[run]):7d} | "
              f"{same[run]}/{frames} ({100 * same[run] / max(frames, 1):.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
