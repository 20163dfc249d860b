"""Detection decoding on models whose outputs are known constants (examples/build_detection_models.py),
run through the real config loader, pipeline assembly, preprocessing and interpreter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import DIGITS_FLOAT, write_config
from edge_runtime.app_config import load_config
from edge_runtime.config.typed import ConfigError
from edge_runtime.pipeline.assembly import PipelineParts, assemble
from edge_runtime.sources.base import Frame

MODELS = Path(__file__).resolve().parent / "models"
SSD_OP = MODELS / "det_ssd_op.tflite"  # real TFLite_Detection_PostProcess op, no metadata
SSD_PLAIN = MODELS / "det_ssd_plain.tflite"  # the same four tensors as constants
YOLO_V8 = MODELS / "det_yolo_v8.tflite"  # [1, 7, 10], pixels, labels cat, dog, bird
YOLO_V5 = MODELS / "det_yolo_v5.tflite"  # [1, 8, 7], normalized, objectness, person, car
ANCHORS = MODELS / "det_anchors.tflite"  # regressors [1, 40, 8], scores [1, 40, 1], face


def build(tmp_path: Path, model: Path, postprocess: dict[str, Any] | None = None,
          preprocess: dict[str, Any] | None = None) -> PipelineParts:
    pipeline: dict[str, Any] = {"name": "det", "source": {"type": "images", "path": str(tmp_path)},
                                "model": {"path": str(model)}}
    if postprocess:
        pipeline["postprocess"] = postprocess
    if preprocess:
        pipeline["preprocess"] = preprocess
    app = load_config(write_config(tmp_path / "config.toml", None, [pipeline]))
    return assemble(app.pipelines[0], app)


def detect(parts: PipelineParts, width: int = 64, height: int = 48) -> list[dict[str, Any]]:
    """One frame of the given size through preprocessing, the interpreter and the task."""
    frame = Frame(np.full((height, width, 3), 90, np.uint8), 0)
    geometry = parts.model.fill_input(lambda out: parts.preprocess(frame, out))
    parts.model.invoke()
    outputs = [parts.model.output(i) for i in range(len(parts.model.outputs))]
    return parts.postprocess(outputs, geometry)["detections"]


def summary(detections: list[dict[str, Any]]) -> list[tuple[str, float, tuple[float, ...]]]:
    return [(d["label"], d["score"], tuple(d["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")))
            for d in detections]


def assert_detections(got: list[dict[str, Any]], expected: list[tuple[str, float, tuple]]) -> None:
    assert [d[0] for d in summary(got)] == [e[0] for e in expected], summary(got)
    for (label, score, box), (_, want_score, want_box) in zip(summary(got), expected):
        assert score == pytest.approx(want_score, abs=1e-5), label
        assert box == pytest.approx(want_box, abs=1e-5), label


def config_error(tmp_path: Path, model: Path, postprocess: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        build(tmp_path, model, postprocess)
    return str(caught.value)


# -- ssd-postprocess ---------------------------------------------------------------------------

SSD_EXPECTED = [("person", 0.9, (0.0, 0.0, 0.5, 0.5)), ("car", 0.8, (0.6, 0.4, 0.9, 0.6)),
                ("bicycle", 0.7, (0.2, 0.7, 0.4, 0.9))]


def test_ssd_postprocess_op_is_recognized_and_decoded(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("person\nbicycle\ncar\n")
    parts = build(tmp_path, SSD_OP, {"task": "detection", "labels": str(labels)})
    # The op suppressed the duplicate person (0.6); the 0.3 person is under threshold 0.5.
    assert_detections(detect(parts), SSD_EXPECTED)


def test_ssd_postprocess_threshold_and_count(tmp_path):
    parts = build(tmp_path, SSD_OP, {"task": "detection", "threshold": 0.2})
    # No labels: class numbers. count = 4, so the op's fifth (garbage) row is never read.
    assert_detections(detect(parts), [("0", 0.9, (0.0, 0.0, 0.5, 0.5)),
                                      ("2", 0.8, (0.6, 0.4, 0.9, 0.6)),
                                      ("1", 0.7, (0.2, 0.7, 0.4, 0.9)),
                                      ("0", 0.3, (0.45, 0.45, 0.55, 0.55))])


def test_ssd_plain_tensors_in_another_order(tmp_path):
    parts = build(tmp_path, SSD_PLAIN)  # task from metadata, format recognized, labels from metadata
    assert_detections(detect(parts), SSD_EXPECTED)


def test_ssd_output_order_option_overrides_the_guess(tmp_path):
    # The file's outputs are boxes, classes, scores, count; claim classes and scores swapped:
    # the class ids (0, 2, 1, 0) become scores and the scores (rounded) class 1.
    parts = build(tmp_path, SSD_PLAIN, {"output_order": ["boxes", "scores", "classes", "count"]})
    assert_detections(detect(parts), [("bicycle", 2.0, (0.6, 0.4, 0.9, 0.6)),
                                      ("bicycle", 1.0, (0.2, 0.7, 0.4, 0.9))])


# -- yolo --------------------------------------------------------------------------------------

YOLO8_EXPECTED = [("cat", 0.9, (0.125, 0.125, 0.375, 0.375)),
                  ("dog", 0.7, (0.15625, 0.125, 0.40625, 0.375)),
                  ("bird", 0.6, (0.625, 0.625, 0.875, 0.875))]


def test_yolo_channels_first_pixels_with_classwise_nms(tmp_path):
    # cat 0.8 overlaps cat 0.9 (IoU 0.78): suppressed; dog 0.7 has the same box but another class.
    assert_detections(detect(build(tmp_path, YOLO_V8)), YOLO8_EXPECTED)


def test_yolo_iou_threshold_option(tmp_path):
    got = detect(build(tmp_path, YOLO_V8, {"iou_threshold": 0.8}))
    assert_detections(got, [YOLO8_EXPECTED[0], ("cat", 0.8, (0.15625, 0.125, 0.40625, 0.375)),
                            *YOLO8_EXPECTED[1:]])


def test_yolo_max_detections_keeps_the_best(tmp_path):
    assert_detections(detect(build(tmp_path, YOLO_V8, {"max_detections": 2})), YOLO8_EXPECTED[:2])


def test_yolo_threshold_option(tmp_path):
    got = detect(build(tmp_path, YOLO_V8, {"threshold": 0.25}))
    assert_detections(got, [*YOLO8_EXPECTED, ("cat", 0.3, (28 / 64, 20 / 48, 36 / 64, 28 / 48))])


def test_yolo_classes_allow_list(tmp_path):
    got = detect(build(tmp_path, YOLO_V8, {"classes": ["bird", "dog"]}))
    assert_detections(got, YOLO8_EXPECTED[1:])


def test_yolo_rows_with_objectness_normalized(tmp_path):
    got = detect(build(tmp_path, YOLO_V5))
    assert_detections(got, [("person", 0.81, (0.375, 0.25, 0.625, 0.75)),
                            ("car", 0.6, (0.2, 0.2, 0.3, 0.3))])
    assert [d["index"] for d in got] == [0, 1]


@pytest.mark.parametrize("resize,width,height,person,car", [
    # 200x100 letterboxed into 64x48: 64x32 content, 8-pixel bars top and bottom, 3.125 px/px.
    ("letterbox", 200, 100, (0.375, 0.125, 0.625, 0.875), (0.2, 0.05, 0.3, 0.2)),
    # 60x90 letterboxed: 32x48 content between 16-pixel bars; the car starts in the left bar.
    ("letterbox", 60, 90, (0.25, 0.25, 0.75, 0.75), (0.0, 0.2, 0.1, 0.3)),
    # 200x100 center-cropped to 133x100 from x = 33 (4:3), 133/64 and 100/48 px per input px.
    ("center-crop", 200, 100, ((24 * 133 / 64 + 33) / 200, 0.25, (40 * 133 / 64 + 33) / 200, 0.75),
     ((12.8 * 133 / 64 + 33) / 200, 0.2, (19.2 * 133 / 64 + 33) / 200, 0.3)),
], ids=["letterbox-wide", "letterbox-tall", "center-crop"])
def test_boxes_are_mapped_to_the_original_frame(tmp_path, resize, width, height, person, car):
    parts = build(tmp_path, YOLO_V5, preprocess={"resize": resize})
    assert_detections(detect(parts, width, height), [("person", 0.81, person), ("car", 0.6, car)])


def test_yolo_normalized_option_overrides_detection(tmp_path):
    # Claiming pixel boxes are normalized: centers like 16 "input widths" clip to the frame edge.
    got = detect(build(tmp_path, YOLO_V8, {"normalized": True, "max_detections": 1}))
    assert summary(got) == [("cat", 0.9, (1.0, 1.0, 1.0, 1.0))]


# -- anchors -----------------------------------------------------------------------------------

def test_anchors_decoding_with_keypoints(tmp_path):
    got = detect(build(tmp_path, ANCHORS, {"nms": "greedy"}), 32, 32)
    # anchor 11 (IoU 0.67 with anchor 10) is suppressed; anchor 0 (0.27) is under threshold.
    assert_detections(got, [("face", 1 / (1 + np.exp(-2.0)), (0.35, 0.225, 0.6, 0.425)),
                            ("face", 1 / (1 + np.exp(-0.5)), (0.0, 0.625, 0.5, 0.875))])
    points = [[c for p in d["keypoints"] for c in (p["x"], p["y"])] for d in got]
    assert points[0] == pytest.approx([0.375, 0.375, 0.575, 0.475], abs=1e-5)
    assert points[1] == pytest.approx([0.25, 0.75, 0.15, 0.75], abs=1e-5)


def test_anchors_default_to_weighted_nms_blending_overlapping_boxes(tmp_path):
    got = detect(build(tmp_path, ANCHORS), 32, 32)
    # anchor 10 (logit 2, xmin 0.35) and anchor 11 (logit 1, the same box 0.05 to the right,
    # IoU 0.67) become their score-weighted mean, with anchor 10's score; anchor 12 stays alone.
    a, b = 1 / (1 + np.exp(-2.0)), 1 / (1 + np.exp(-1.0))
    x0 = (0.35 * a + 0.4 * b) / (a + b)
    assert_detections(got, [("face", a, (x0, 0.225, x0 + 0.25, 0.425)),
                            ("face", 1 / (1 + np.exp(-0.5)), (0.0, 0.625, 0.5, 0.875))])
    greedy = detect(build(tmp_path, ANCHORS, {"nms": "greedy"}), 32, 32)
    assert got[1] == greedy[1]  # nothing to blend with: the same detection either way
    assert got[0]["keypoints"] == greedy[0]["keypoints"]  # both anchors put them in one place


def test_anchors_keypoints_follow_the_letterbox(tmp_path):
    # 64x32 into 32x32: 32x16 content, 8-pixel bars, 2 frame px per input px.
    got = detect(build(tmp_path, ANCHORS, {"nms": "greedy"}, preprocess={"resize": "letterbox"}),
                 64, 32)
    assert_detections(got[:1], [("face", 1 / (1 + np.exp(-2.0)), (0.35, 0.0, 0.6, 0.35))])
    assert [c for p in got[0]["keypoints"] for c in (p["x"], p["y"])] == \
        pytest.approx([0.375, 0.25, 0.575, 0.45], abs=1e-5)


def test_anchors_nms_and_sigmoid_options(tmp_path):
    got = detect(build(tmp_path, ANCHORS, {"iou_threshold": 0.9, "threshold": 0.2}), 32, 32)
    assert [round(d["score"], 3) for d in got] == [0.881, 0.731, 0.622, 0.269]
    raw = detect(build(tmp_path, ANCHORS, {"sigmoid": False, "threshold": 0.6}), 32, 32)
    assert [d["score"] for d in raw] == [2.0]  # logits used as scores; the 1.0 one suppressed


# -- errors at build time ------------------------------------------------------------------------

@pytest.mark.parametrize("model,options,message", [
    (SSD_PLAIN, {"format": "yolo"},
     "pipelines[0].postprocess: yolo expects one output of shape [1, 4+C, N] or [1, N, 5+C], got "),
    (YOLO_V8, {"format": "ssd-postprocess"},
     "ssd-postprocess expects four outputs: boxes [1, N, 4], classes [1, N], scores [1, N] and "
     "count [1], got 'PartitionedCall:0' [1, 7, 10]"),
    (YOLO_V8, {"format": "anchors", "strides": [8]}, "anchors expects two outputs"),
    (ANCHORS, {"strides": []}, "anchors needs the option 'strides'"),
    (ANCHORS, {"strides": [8]}, "the anchor options give 32 anchors but the model has 40"),
    (ANCHORS, {"num_keypoints": 3}, "num_keypoints = 3 but regressors"),
    (YOLO_V8, {"strides": [8, 16]}, "option 'strides' is for format anchors, not yolo"),
    (YOLO_V8, {"classes": ["cat", "horse"]}, "classes: unknown label 'horse' (model labels: cat, "),
    (YOLO_V8, {"output_order": ["boxes"]}, "option 'output_order' is for format ssd-postprocess"),
    (SSD_PLAIN, {"output_order": ["boxes", "scores", "classes"]},
     "output_order must name each of boxes, classes, scores, count once"),
    (ANCHORS, {"format": "auto"}, "cannot tell the detection format from the outputs"),
    (DIGITS_FLOAT, {"task": "detection"}, "cannot tell the detection format"),
    (YOLO_V8, {"threshold": 1.5}, "pipelines[0].postprocess.threshold: must be between 0.0 and 1.0"),
    (YOLO_V8, {"format": "retinanet"}, "pipelines[0].postprocess.format: must be one of"),
    (YOLO_V8, {"top_k": 3}, "pipelines[0].postprocess.top_k: unknown key (expected one of: "),
    (YOLO_V8, {"max_detections": 0}, "pipelines[0].postprocess.max_detections: must be >= 1"),
])
def test_options_that_do_not_fit_the_model_are_config_errors(tmp_path, model, options, message):
    assert message in config_error(tmp_path, model, options)


def test_too_few_labels_for_the_yolo_classes(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\n")
    message = config_error(tmp_path, YOLO_V8, {"labels": str(labels)})
    assert "2 labels (label_offset 0) for 3 classes" in message


def test_label_offset_shifts_labels_and_indices(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("background\ncat\ndog\nbird\n")
    got = detect(build(tmp_path, YOLO_V8, {"labels": str(labels), "label_offset": 1}))
    assert [(d["index"], d["label"]) for d in got] == [(1, "cat"), (2, "dog"), (3, "bird")]


# -- broken outputs ------------------------------------------------------------------------------

def run_outputs(parts: PipelineParts) -> list[np.ndarray]:
    parts.model.fill_input(lambda out: parts.preprocess(Frame(np.zeros((48, 64, 3), np.uint8), 0),
                                                        out))
    parts.model.invoke()
    return [parts.model.output(i) for i in range(len(parts.model.outputs))]


def test_non_finite_boxes_are_dropped(tmp_path):
    parts = build(tmp_path, YOLO_V5)
    outputs = run_outputs(parts)
    outputs[0][0, 0, 0] = np.nan  # the person's cx
    outputs[0][0, 1, 2] = np.inf  # the car's width
    assert parts.postprocess(outputs, None) == {"detections": []}
    outputs = run_outputs(parts)
    outputs[0][0, 1, 2] = np.inf
    assert [d["label"] for d in parts.postprocess(outputs, None)["detections"]] == ["person"]


def test_ssd_count_out_of_range_and_negative_class_ids(tmp_path):
    parts = build(tmp_path, SSD_PLAIN)  # outputs: boxes, classes, scores, count
    outputs = run_outputs(parts)
    outputs[3][0] = 99.0  # more than the 5 rows: read all 5, no further
    outputs[1][0, 0] = -1.0  # a class id no label can have
    got = parts.postprocess(outputs, None)["detections"]
    assert [d["label"] for d in got] == ["car", "bicycle"]
    outputs[3][0] = -3.0
    assert parts.postprocess(outputs, None) == {"detections": []}
