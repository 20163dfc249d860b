"""The tracker, zones and object events on generated tracks: crossing, occlusion, re-entry."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edge_runtime.tracking.objects import ObjectTracker
from edge_runtime.tracking.tracker import Tracker, iou_matrix, to_center
from edge_runtime.config.integration import check_polygon
from edge_runtime.tracking.zones import Zone, zones_of

SIZE = 0.1


def box(cx: float, cy: float, size: float = SIZE) -> list[float]:
    return [cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2]


def run(tracker: Tracker, frames: list[list[tuple[str, list[float]]]]) -> list[list[int]]:
    """Track ids per frame, in each frame's detection order."""
    ids = []
    for detections in frames:
        boxes = np.array([b for _, b in detections]).reshape(-1, 4)
        update = tracker.update(boxes, [label for label, _ in detections], [0.9] * len(detections))
        ids.append([t.id for t in update.track_of])
    return ids


def test_iou_matrix_matches_hand_computed_values() -> None:
    a = to_center(np.array([box(0.5, 0.5, 0.2)]))
    b = to_center(np.array([box(0.5, 0.5, 0.2), box(0.6, 0.5, 0.2), box(0.9, 0.9, 0.1)]))
    iou = iou_matrix(a, b)
    assert iou.shape == (1, 3)
    assert iou[0, 0] == pytest.approx(1.0)
    assert iou[0, 1] == pytest.approx(0.1 * 0.2 / (2 * 0.04 - 0.1 * 0.2))
    assert iou[0, 2] == 0.0


def test_crossing_objects_keep_their_ids() -> None:
    """Two people walk through each other; at the crossing their boxes coincide."""
    tracker = Tracker(max_age=3, min_hits=1)
    frames = []
    for step in range(21):
        x = 0.1 + 0.04 * step  # 0.1 -> 0.9 and back the other way
        frames.append([("person", box(x, 0.5)), ("person", box(1.0 - x, 0.5))])
    ids = run(tracker, frames)
    first = ids[0]
    assert first[0] != first[1]
    assert all(frame == first for frame in ids), ids


def test_crossing_objects_listed_in_varying_order() -> None:
    """Association is by position, not by the detector's output order."""
    tracker = Tracker(max_age=3, min_hits=1)
    rng = np.random.default_rng(3)
    by_object: dict[str, set[int]] = {"a": set(), "b": set()}
    for step in range(21):
        x = 0.1 + 0.04 * step
        dets = [("a", box(x, 0.45)), ("b", box(1.0 - x, 0.55))]
        order = rng.permutation(2)
        shuffled = [dets[i] for i in order]
        update = tracker.update(np.array([b for _, b in shuffled]), ["car", "car"], [0.8, 0.8])
        for (name, _), track in zip(shuffled, update.track_of):
            by_object[name].add(track.id)
    assert len(by_object["a"]) == 1 and len(by_object["b"]) == 1
    assert by_object["a"] != by_object["b"]


def test_occlusion_shorter_than_max_age_keeps_the_id() -> None:
    """Hidden behind a pillar for 4 frames while moving: the prediction carries it through."""
    tracker = Tracker(max_age=5, min_hits=2)
    frames = [[("car", box(0.1 + 0.05 * step, 0.5))] if not 5 <= step < 9 else []
              for step in range(15)]
    ids = run(tracker, frames)
    seen = {i for frame in ids for i in frame}
    assert seen == {ids[0][0]}
    assert ids[-1] == ids[0]


def test_occlusion_longer_than_max_age_ends_the_track() -> None:
    tracker = Tracker(max_age=2, min_hits=2)
    frames = [[("car", box(0.1 + 0.05 * step, 0.5))] if not 5 <= step < 9 else []
              for step in range(15)]
    ids = run(tracker, frames)
    assert ids[0] != ids[-1]


def test_leaving_and_reentering_gets_a_new_id_and_ends_the_old_one() -> None:
    tracker = Tracker(max_age=2, min_hits=1)
    ended = []
    ids = []
    for step in range(20):
        present = step < 6 or step >= 12  # gone for 6 frames: longer than max_age
        boxes = np.array([box(0.3, 0.5)]) if present else np.zeros((0, 4))
        update = tracker.update(boxes, ["dog"] * len(boxes), [0.7] * len(boxes))
        ids.append([t.id for t in update.track_of])
        ended += [t.id for t in update.ended]
    assert ids[0] != ids[-1]
    assert ended == [ids[0][0]]


def test_tentative_tracks_die_at_their_first_miss() -> None:
    tracker = Tracker(max_age=10, min_hits=3)
    update = tracker.update(np.array([box(0.5, 0.5)]), ["cat"], [0.5])
    assert not tracker.confirmed(update.track_of[0])
    update = tracker.update(np.zeros((0, 4)), [], [])
    assert [t.id for t in update.ended] == [1]
    assert tracker.tracks == []


def test_label_flip_keeps_the_track_and_majority_label_wins() -> None:
    tracker = Tracker(max_age=3, min_hits=1)
    labels = ["dog", "dog", "cat", "dog", "cat", "cat", "cat", "cat"]
    seen = []
    for label in labels:
        update = tracker.update(np.array([box(0.5, 0.5)]), [label], [0.8])
        seen.append((update.track_of[0].id, update.track_of[0].label))
    assert {i for i, _ in seen} == {1}
    assert seen[2][1] == "dog" and seen[-1][1] == "cat"


def test_zone_membership_uses_the_bottom_center() -> None:
    door = Zone("door", ((0.0, 0.6), (0.5, 0.6), (0.5, 1.0), (0.0, 1.0)))
    yard = Zone("yard", ((0.5, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0)))
    tall = {"xmin": 0.1, "ymin": 0.1, "xmax": 0.3, "ymax": 0.9}  # feet in the door zone
    assert zones_of(tall, (door, yard)) == ["door"]
    assert zones_of({"xmin": 0.6, "ymin": 0.1, "xmax": 0.8, "ymax": 0.3}, (door, yard)) == ["yard"]
    assert zones_of({"xmin": 0.1, "ymin": 0.1, "xmax": 0.3, "ymax": 0.3}, (door, yard)) == []
    triangle = Zone("t", ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0)))
    assert triangle.contains(0.2, 0.2) and not triangle.contains(0.8, 0.8)


@pytest.mark.parametrize("points, problem", [
    (((0.0, 0.0), (1.0, 0.0)), "at least 3 points"),
    (((0.0, 0.0), (1.5, 0.0), (0.0, 1.0)), "outside the frame"),
    (((0.0, 0.0), (0.5, 0.5), (1.0, 1.0)), "no area"),
    (((0.0, 0.0, 0.0), (0.5, 0.5), (1.0, 1.0)), "must be [x, y]"),
])
def test_bad_polygons_are_explained(points: Any, problem: str) -> None:
    assert problem in check_polygon(points)
    assert check_polygon(((0.0, 0.0), (1.0, 0.0), (0.0, 1.0))) is None


def detections_at(*objects: tuple[str, float, float, float],
                  size: float = 0.2) -> list[dict[str, Any]]:
    return [{"index": 0, "label": label, "score": score,
             "box": dict(zip(("xmin", "ymin", "xmax", "ymax"), box(x, y, size)))}
            for label, x, y, score in objects]


def test_events_follow_the_object_lifecycle() -> None:
    zone = Zone("porch", ((0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)))
    objects = ObjectTracker("pi", "door", Tracker(max_age=2, min_hits=2), (zone,))
    log: list[dict[str, Any]] = []
    appeared = []
    # A person walks from the right half into the porch (left half), then disappears.
    xs = [0.8, 0.7, 0.6, 0.45, 0.4, 0.3, 0.3]
    scores = [0.5, 0.6, 0.9, 0.7, 0.6, 0.6, 0.6]
    for frame, (x, score) in enumerate(zip(xs, scores)):
        dets = detections_at(("person", x, 0.5, score))
        result = objects.process(dets, captured=1000.0 + frame)
        assert dets[0]["id"] == 1
        assert dets[0]["zones"] == (["porch"] if x < 0.5 else [])
        assert result.zone_counts == {"porch": 1 if x < 0.5 else 0}
        log += result.events
        appeared.append(result.appeared)
    for frame in range(3):
        log += objects.process([], captured=1007.0 + frame).events
    kinds = [e["type"] for e in log]
    assert kinds == ["new", "update", "end"], kinds
    new, update, end = log
    assert new["ts"] == "1970-01-01T00:16:41.000Z"  # confirmed at its second frame
    assert new["first_seen"] == "1970-01-01T00:16:40.000Z" and new["zones"] == []
    assert update["zones"] == ["porch"] and update["entered_zones"] == ["porch"]
    assert end["best_score"] == 0.9 and end["best_box"]["xmin"] == pytest.approx(0.5)
    assert end["last_seen"] == "1970-01-01T00:16:46.000Z" and end["zones"] == []
    assert end["entered_zones"] == ["porch"]
    assert appeared == [False, True, False, False, False, False, False]
    assert all(e["seq"] is None and e["id"] == 1 and e["label"] == "person" for e in log)


def test_close_ends_announced_objects_only() -> None:
    objects = ObjectTracker("pi", "door", Tracker(max_age=5, min_hits=2))
    objects.process(detections_at(("car", 0.2, 0.2, 0.9), ("car", 0.8, 0.8, 0.9)), 1.0)
    objects.process(detections_at(("car", 0.2, 0.2, 0.9)), 2.0)  # the second stays tentative
    objects.process(detections_at(("car", 0.2, 0.2, 0.9), ("cat", 0.8, 0.2, 0.9)), 3.0)
    ends = objects.close(4.0)
    assert [(e["type"], e["label"]) for e in ends] == [("end", "car")]
    assert objects.close(5.0) == []


def test_label_change_of_a_confirmed_object_is_an_update() -> None:
    objects = ObjectTracker("pi", "door", Tracker(max_age=5, min_hits=1))
    kinds = []
    for label in ["dog", "dog", "cat", "cat", "cat", "cat"]:
        kinds += [(e["type"], e["label"]) for e in
                  objects.process(detections_at((label, 0.5, 0.5, 0.8)), 0.0).events]
    assert kinds == [("new", "dog"), ("update", "cat")]
