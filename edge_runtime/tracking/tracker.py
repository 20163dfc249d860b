"""A SORT-like multi-object tracker: IoU association against motion-predicted boxes.

Each track keeps its box as (center x, center y, width, height) and a per-frame velocity of
those four numbers, smoothed with an alpha-beta filter (the steady state of SORT's constant-
velocity Kalman filter, without its matrices). Every frame:

1. every track predicts its box one frame ahead (box + velocity);
2. detections and predicted boxes are paired greedily by IoU, best pair first, pairs below
   `iou_threshold` never; a detection of the track's own label wins over an equal overlap of
   another label (a label can still change: a detector that flips "dog"/"cat" keeps one track);
3. a matched track corrects its box and velocity; an unmatched detection starts a tentative
   track; a track that has been unmatched for more than `max_age` frames ends (a tentative
   track ends at its first miss: one-frame noise never becomes an object).

A track is confirmed once it has been matched `min_hits` times. Greedy matching instead of the
Hungarian algorithm: same pairs whenever the best overlaps are unambiguous, no scipy on the
device, and O(n^2 log n) in numpy for n objects (`bench/bench_tracker.py`).

Pure numpy, no clock, no I/O: one instance per pipeline, called from its publishing thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ALPHA = 0.6  # weight of the measurement in the corrected box
BETA = 0.3  # weight of the measured displacement in the corrected velocity
SAME_LABEL_BONUS = 1e-3  # breaks IoU ties in favour of the track's own label


@dataclass
class Track:
    id: int
    box: np.ndarray  # (cx, cy, w, h), normalized frame coordinates, after the last correction
    velocity: np.ndarray  # per frame, same units
    label: str
    hits: int = 1  # frames matched
    misses: int = 0  # frames unmatched since the last match
    age: int = 1  # frames since the track started
    label_scores: dict[str, float] = field(default_factory=dict)  # summed score per label

    def predicted(self) -> np.ndarray:
        return self.box + self.velocity

    def corners(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of the current box."""
        cx, cy, w, h = (float(v) for v in self.box)
        return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


@dataclass(frozen=True)
class Update:
    """What one frame did: the track of each detection (same order) and the tracks that ended."""

    track_of: list[Track]
    ended: list[Track]


def to_center(boxes: np.ndarray) -> np.ndarray:
    """(n, 4) xmin, ymin, xmax, ymax -> (n, 4) cx, cy, w, h."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    wh = boxes[:, 2:] - boxes[:, :2]
    return np.concatenate([boxes[:, :2] + wh / 2, wh], axis=1)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every (cx, cy, w, h) box in `a` with every one in `b`: shape (len(a), len(b))."""
    a_lo, a_hi = a[:, None, :2] - a[:, None, 2:] / 2, a[:, None, :2] + a[:, None, 2:] / 2
    b_lo, b_hi = b[None, :, :2] - b[None, :, 2:] / 2, b[None, :, :2] + b[None, :, 2:] / 2
    inter = np.clip(np.minimum(a_hi, b_hi) - np.maximum(a_lo, b_lo), 0.0, None).prod(axis=2)
    area_a = np.clip(a[:, None, 2:], 0.0, None).prod(axis=2)
    area_b = np.clip(b[None, :, 2:], 0.0, None).prod(axis=2)
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


class Tracker:
    def __init__(self, max_age: int = 10, min_hits: int = 3, iou_threshold: float = 0.3) -> None:
        self.max_age = max_age
        self.min_hits = min_hits
        self.iou_threshold = iou_threshold
        self.tracks: list[Track] = []
        self._next_id = 1

    def confirmed(self, track: Track) -> bool:
        return track.hits >= self.min_hits

    def update(self, boxes: np.ndarray, labels: list[str], scores: list[float]) -> Update:
        """Feed one frame's detections (corner boxes, normalized); returns what changed."""
        detections = to_center(boxes)
        pairs = self._associate(detections, labels)
        track_of: list[Track | None] = [None] * len(detections)
        matched_tracks = set()
        for t, d in pairs:
            track = self.tracks[t]
            self._correct(track, detections[d])
            track_of[d] = track
            matched_tracks.add(t)
        ended: list[Track] = []
        kept: list[Track] = []
        for index, track in enumerate(self.tracks):
            if index not in matched_tracks:
                track.box = track.predicted()  # coast along the motion while unseen
                track.misses += 1
                track.age += 1
                if track.misses > self.max_age or not self.confirmed(track):
                    ended.append(track)
                    continue
            kept.append(track)
        self.tracks = kept
        for d, track in enumerate(track_of):
            if track is None:
                track = Track(self._next_id, detections[d].copy(), np.zeros(4), labels[d])
                self._next_id += 1
                self.tracks.append(track)
                track_of[d] = track
            track.label_scores[labels[d]] = track.label_scores.get(labels[d], 0.0) + scores[d]
            track.label = max(track.label_scores, key=track.label_scores.__getitem__)
        return Update([t for t in track_of if t is not None], ended)

    def _associate(self, detections: np.ndarray, labels: list[str]) -> list[tuple[int, int]]:
        if not self.tracks or not len(detections):
            return []
        predicted = np.stack([t.predicted() for t in self.tracks])
        iou = iou_matrix(predicted, detections)
        codes = {label: i for i, label in enumerate(dict.fromkeys(labels))}
        track_codes = np.array([codes.get(t.label, -1) for t in self.tracks])
        same = track_codes[:, None] == np.array([codes[label] for label in labels])[None, :]
        score = iou + SAME_LABEL_BONUS * same
        candidates = np.argwhere(iou >= self.iou_threshold)
        order = np.argsort(-score[candidates[:, 0], candidates[:, 1]], kind="stable")
        pairs: list[tuple[int, int]] = []
        used_t: set[int] = set()
        used_d: set[int] = set()
        for t, d in candidates[order].tolist():
            if t in used_t or d in used_d:
                continue
            used_t.add(t)
            used_d.add(d)
            pairs.append((t, d))
        return pairs

    def _correct(self, track: Track, measured: np.ndarray) -> None:
        steps = track.misses + 1  # frames since the last match
        if track.hits == 1:
            # Second sighting: the velocity was unknown (a Kalman filter's large initial
            # uncertainty), so take the measured displacement as it is.
            track.velocity = (measured - track.box) / steps
            track.box = measured.copy()
        else:
            predicted = track.predicted()
            residual = measured - predicted
            track.box = predicted + ALPHA * residual
            track.velocity = track.velocity + BETA * residual / steps
        track.hits += 1
        track.misses = 0
        track.age += 1
