"""The pure parts of detection decoding: NMS, anchor generation, ssd output roles."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.model.tflite_model import TensorSpec
from edge_runtime.postprocessing.base import PostprocessError
from edge_runtime.postprocessing.detection.anchors import AnchorSpec, ssd_anchors
from edge_runtime.postprocessing.detection.nms import iou_one_to_many, nms, weighted_nms
from edge_runtime.postprocessing.detection.ssd import assign_roles


def test_iou_of_overlapping_disjoint_and_empty_boxes():
    box = np.array([0, 0, 10, 10], np.float32)
    others = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10], [3, 3, 3, 3]], np.float32)
    assert iou_one_to_many(box, others) == pytest.approx([50 / 150, 0, 1, 0])


def test_nms_is_greedy_best_first_and_class_wise():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10], [20, 20, 30, 30],
                      [21, 20, 31, 30]], np.float32)
    scores = np.array([0.6, 0.9, 0.8, 0.5, 0.4], np.float32)
    classes = np.array([0, 0, 1, 0, 0])
    # 1 (best) suppresses 0 (same class, IoU 0.82) but not 2 (other class); 3 suppresses 4.
    assert nms(boxes, scores, classes, 0.5, 10).tolist() == [1, 2, 3]
    assert nms(boxes, scores, classes, 0.9, 10).tolist() == [1, 2, 0, 3, 4]
    assert nms(boxes, scores, classes, 0.5, 2).tolist() == [1, 2]
    assert nms(boxes[:0], scores[:0], classes[:0], 0.5, 10).tolist() == []


def test_weighted_nms_blends_each_cluster_by_score_and_keeps_the_best_score():
    boxes = np.array([[0, 0, 10, 10], [2, 0, 12, 10], [0, 0, 10, 10], [20, 20, 30, 30],
                      [40, 40, 50, 50]], np.float32)
    scores = np.array([0.6, 0.9, 0.8, 0.5, 0.4], np.float32)
    classes = np.array([0, 0, 1, 0, 0])
    points = np.array([[[0, 0]], [[10, 10]], [[5, 5]], [[1, 1]], [[2, 2]]], np.float32)
    keep, blended, kps = weighted_nms(boxes, scores, classes, points, 0.5, 10)
    # 1 (best) and 0 (IoU 0.67, same class) blend 0.9:0.6; 2 is another class; 3, 4 stand alone
    assert keep.tolist() == [1, 2, 3, 4]
    np.testing.assert_allclose(blended[0], [(2 * 0.9 + 0 * 0.6) / 1.5, 0, (12 * 0.9 + 10 * 0.6) / 1.5, 10],
                               rtol=1e-6)
    np.testing.assert_allclose(blended[1:], boxes[[2, 3, 4]])
    np.testing.assert_allclose(kps[0], [[10 * 0.9 / 1.5, 10 * 0.9 / 1.5]], rtol=1e-6)
    np.testing.assert_allclose(kps[1:], points[[2, 3, 4]])
    # a higher threshold splits the cluster; the limit keeps the best clusters
    assert weighted_nms(boxes, scores, classes, None, 0.7, 10)[0].tolist() == [1, 2, 0, 3, 4]
    keep, blended, kps = weighted_nms(boxes, scores, classes, None, 0.5, 2)
    assert keep.tolist() == [1, 2] and blended.shape == (2, 4) and kps is None
    keep, blended, kps = weighted_nms(boxes[:0], scores[:0], classes[:0], points[:0], 0.5, 10)
    assert keep.size == 0 and blended.shape == (0, 4) and kps.shape == (0, 1, 2)


def test_weighted_nms_matches_greedy_on_disjoint_boxes():
    rng = np.random.default_rng(3)
    x = np.arange(30, dtype=np.float32) * 20
    boxes = np.stack([x, x, x + 10, x + 10], axis=1)
    scores = rng.random(30).astype(np.float32)
    classes = np.zeros(30, np.int64)
    keep, blended, _ = weighted_nms(boxes, scores, classes, None, 0.3, 12)
    assert keep.tolist() == nms(boxes, scores, classes, 0.3, 12).tolist()
    np.testing.assert_array_equal(blended, boxes[keep])


def test_nms_class_offsets_survive_negative_and_large_coordinates():
    boxes = np.array([[-50, -50, 500, 500], [-50, -50, 500, 500]], np.float32)
    assert nms(boxes, np.array([0.9, 0.8]), np.array([0, 7]), 0.5, 10).tolist() == [0, 1]


def test_blazeface_anchors_match_mediapipe():
    # face_detection_short_range: 128x128, strides 8,16,16,16, fixed size: 896 anchors.
    anchors = ssd_anchors(AnchorSpec(strides=(8, 16, 16, 16), input_width=128, input_height=128,
                                     num_layers=4, fixed_anchor_size=True))
    assert anchors.shape == (896, 4)
    assert anchors[0].tolist() == [0.03125, 0.03125, 1.0, 1.0]
    assert anchors[1].tolist() == [0.03125, 0.03125, 1.0, 1.0]  # 2 per cell (interpolated)
    assert anchors[2].tolist() == [0.09375, 0.03125, 1.0, 1.0]  # next column
    assert anchors[32].tolist() == [0.03125, 0.09375, 1.0, 1.0]  # next row
    assert anchors[512].tolist() == [0.0625, 0.0625, 1.0, 1.0]  # 16-stride layers: 6 per cell
    assert anchors[518].tolist() == [0.1875, 0.0625, 1.0, 1.0]
    assert anchors[-1].tolist() == [0.9375, 0.9375, 1.0, 1.0]


def test_ssd_mobilenet_anchor_count_and_sizes():
    # The classic 300x300 SSD MobileNet layout gives the well-known 1917 anchors.
    spec = AnchorSpec(strides=(16, 32, 64, 128, 256, 512), input_width=300, input_height=300,
                      num_layers=6, min_scale=0.2, max_scale=0.95,
                      aspect_ratios=(1.0, 2.0, 0.5, 3.0, 0.3333), reduce_boxes_in_lowest_layer=True)
    anchors = ssd_anchors(spec)
    assert anchors.shape == (1917, 4)
    # lowest layer: 3 per cell, scale 0.1 at ratio 1, then 0.2 at ratios 2 and 0.5
    np.testing.assert_allclose(
        anchors[:3, 2:], [[0.1, 0.1], [0.2 * 2 ** 0.5, 0.2 / 2 ** 0.5], [0.2 / 2 ** 0.5, 0.2 * 2 ** 0.5]],
        rtol=1e-6)
    assert anchors[0, :2].tolist() == pytest.approx([0.5 / 19, 0.5 / 19])
    # the last layer's interpolated anchor uses sqrt(0.95 * 1.0)
    assert anchors[-1].tolist() == pytest.approx([0.5, 0.5, 0.95 ** 0.5, 0.95 ** 0.5])


def spec(name: str, *shape: int) -> TensorSpec:
    return TensorSpec(name, 0, shape, np.dtype(np.float32))


@pytest.mark.parametrize("outputs,roles", [
    # the fused op's own names: TFLite_Detection_PostProcess, :1 classes, :2 scores, :3 count
    ([spec("TFLite_Detection_PostProcess", 1, 10, 4), spec("TFLite_Detection_PostProcess:1", 1, 10),
      spec("TFLite_Detection_PostProcess:2", 1, 10), spec("TFLite_Detection_PostProcess:3", 1)],
     {"boxes": 0, "classes": 1, "scores": 2, "count": 3}),
    # TF2 signature numbering: count :0, scores :1, classes :2, boxes :3, stored in another order
    ([spec("StatefulPartitionedCall:1", 1, 25), spec("StatefulPartitionedCall:3", 1, 25, 4),
      spec("StatefulPartitionedCall:0", 1), spec("StatefulPartitionedCall:2", 1, 25)],
     {"scores": 0, "boxes": 1, "count": 2, "classes": 3}),
    # names that say it
    ([spec("detection_boxes", 1, 5, 4), spec("detection_scores", 1, 5),
      spec("detection_classes", 1, 5), spec("num_detections", 1)],
     {"boxes": 0, "scores": 1, "classes": 2, "count": 3}),
    # no hints: pycoral's positional rule (count not last: scores first)
    ([spec("a", 1, 5), spec("b", 1, 5, 4), spec("c", 1), spec("d", 1, 5)],
     {"scores": 0, "boxes": 1, "count": 2, "classes": 3}),
    # one detection: classes/scores [1, 1] are still told apart from count [1]
    ([spec("a", 1, 1, 4), spec("b", 1, 1), spec("c", 1, 1), spec("d", 1)],
     {"boxes": 0, "classes": 1, "scores": 2, "count": 3}),
])
def test_ssd_output_roles(outputs, roles):
    assert assign_roles(tuple(outputs), None) == roles


def test_ssd_roles_refuse_other_shapes():
    with pytest.raises(PostprocessError, match="same N"):
        assign_roles((spec("a", 1, 5, 4), spec("b", 1, 6), spec("c", 1, 5), spec("d", 1)), None)
    with pytest.raises(PostprocessError, match="four outputs"):
        assign_roles((spec("a", 1, 5, 4), spec("b", 1, 5), spec("d", 1)), None)


def test_nms_looks_at_the_best_max_candidates_only():
    from edge_runtime.postprocessing.detection.nms import MAX_CANDIDATES

    count = MAX_CANDIDATES + 500
    x = np.arange(count, dtype=np.float32) * 10  # disjoint boxes: nothing suppresses anything
    boxes = np.stack([x, np.zeros(count), x + 5, np.full(count, 5.0)], axis=1).astype(np.float32)
    scores = np.linspace(0.1, 1.0, count).astype(np.float32)
    keep = nms(boxes, scores, np.zeros(count, np.int64), 0.5, 10 * count)
    assert keep.size == MAX_CANDIDATES
    assert keep[0] == count - 1 and keep.min() == count - MAX_CANDIDATES
