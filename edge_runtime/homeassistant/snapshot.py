"""Annotated JPEG snapshots of the frame behind a result, encoded off the pipeline threads.

`SnapshotPolicy` (publishing thread) decides when a picture is worth taking: when the set of
labels in view changes or a tracked object appears, at most every `min_interval` seconds (a
trigger inside the interval is kept and served by the first frame after it). `SnapshotWorker`
(one `snapshots` thread per daemon) draws the boxes, labels and scores with OpenCV on a copy
scaled to `max_width`, encodes it and hands the bytes to the sink (retained, latest value: never
the durable outbox). It keeps one pending frame per pipeline and a newer one replaces it, so a
slow encode never queues frames nor blocks the pipeline that asked.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Hashable

import cv2
import numpy as np

from edge_runtime.supervision.heartbeat import Heartbeats
from edge_runtime.supervision.threads import NamedThread

logger = logging.getLogger(__name__)

WAIT = 0.5
_COLORS = [(56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207),
           (10, 249, 72), (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0)]


class SnapshotPolicy:
    def __init__(self, min_interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.min_interval = min_interval
        self._clock = clock
        self._shown: Hashable = object()  # nothing shown yet
        self._last = float("-inf")
        self._wanted = False

    def should_take(self, shown: Hashable, appeared: bool) -> bool:
        """`shown`: what the result shows (its task's summary: top label, set of labels)."""
        if shown != self._shown or appeared:
            self._wanted = True
        self._shown = shown
        now = self._clock()
        if self._wanted and now - self._last >= self.min_interval:
            self._wanted, self._last = False, now
            return True
        return False


def render(image: np.ndarray, fields: dict[str, Any], max_width: int, quality: int) -> bytes:
    """The frame (BGR) scaled to at most `max_width`, boxes and labels drawn, as a JPEG."""
    height, width = image.shape[:2]
    if width > max_width:
        scale = max_width / width
        image = cv2.resize(image, (max_width, max(1, round(height * scale))),
                           interpolation=cv2.INTER_AREA)
    else:
        image = image.copy()
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    height, width = image.shape[:2]
    thickness = max(1, round(width / 320))
    font_scale = max(0.4, width / 1280)
    for detection in fields.get("detections", ()):
        box = detection["box"]
        x0, y0 = round(box["xmin"] * width), round(box["ymin"] * height)
        x1, y1 = round(box["xmax"] * width), round(box["ymax"] * height)
        color = _COLORS[zlib.crc32(str(detection["label"]).encode()) % len(_COLORS)]
        cv2.rectangle(image, (x0, y0), (x1, y1), color, thickness)
        text = f"{detection['label']} {detection['score']:.2f}"
        if "id" in detection:
            text = f"#{detection['id']} " + text
        _label(image, text, x0, y0, color, font_scale, thickness)
    classes = fields.get("classes") or []
    if classes:
        _label(image, f"{classes[0]['label']} {classes[0]['score']:.2f}", 0, 0, _COLORS[0],
               font_scale, thickness)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("OpenCV could not encode the snapshot")
    return encoded.tobytes()


def _label(image: np.ndarray, text: str, x: int, y: int, color: tuple[int, int, int],
           scale: float, thickness: int) -> None:
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    top = max(0, y - h - base - 2)
    cv2.rectangle(image, (x, top), (x + w + 2, top + h + base + 2), color, cv2.FILLED)
    cv2.putText(image, text, (x + 1, top + h + 1), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (255, 255, 255), thickness, cv2.LINE_AA)


@dataclass(frozen=True)
class SnapshotRequest:
    pipeline: str
    image: np.ndarray  # the source's frame (not reused by the source: a reference is enough)
    fields: dict[str, Any]
    max_width: int
    quality: int


class SnapshotWorker:
    """The `snapshots` thread: one pending request per pipeline, newest wins."""

    def __init__(self, sink: Callable[[str, bytes], None], heartbeats: Heartbeats | None = None) -> None:
        self._sink = sink
        self._heartbeats = heartbeats
        self._pending: dict[str, SnapshotRequest] = {}
        self._cond = threading.Condition()
        self._stop = False
        self.replaced = 0  # requests replaced by a newer one before they were encoded
        self.encoded = 0
        self.encode_ms = 0.0  # total time spent rendering and encoding
        self._thread = NamedThread(target=self._run, name="snapshots", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, request: SnapshotRequest) -> None:
        with self._cond:
            if request.pipeline in self._pending:
                self.replaced += 1
            self._pending[request.pipeline] = request
            self._cond.notify()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        beat = self._heartbeats.register("snapshots") if self._heartbeats else None
        try:
            while True:
                with self._cond:
                    while not self._pending and not self._stop:
                        if beat:
                            beat.beat()
                        self._cond.wait(WAIT)
                    if not self._pending:
                        return
                    pipeline = next(iter(self._pending))
                    request = self._pending.pop(pipeline)
                if beat:
                    beat.beat()
                t0 = time.perf_counter()
                try:
                    jpeg = render(request.image, request.fields, request.max_width,
                                  request.quality)
                except Exception:  # noqa: BLE001 - a bad snapshot must not end the thread
                    logger.exception("pipeline %s: snapshot failed", pipeline)
                    continue
                self.encode_ms += (time.perf_counter() - t0) * 1e3
                self.encoded += 1
                self._sink(pipeline, jpeg)
        finally:
            if beat and self._heartbeats:
                self._heartbeats.unregister("snapshots")
