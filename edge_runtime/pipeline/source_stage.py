"""The source thread: open, read and pace a source into the FrameSlot; a failing source is closed
and reopened with backoff (degraded, not hung: it keeps beating), `EndOfStream` ends it.

The backoff starts over only when a reopened source delivers a frame, not when `open` succeeds:
a network camera that accepts the connection and then sends nothing (or a command that starts and
exits at once) would otherwise be reopened at the minimum delay forever. Each failure counts in
`PipelineStats.source_failures`; each recovery (a frame again after failures) in
`source_reconnects`.
"""

from __future__ import annotations

import logging
import threading
import time

from edge_runtime.config.schema import BackoffConfig, RetryConfig
from edge_runtime.pipeline.slot import FrameSlot
from edge_runtime.pipeline.stages import WAIT
from edge_runtime.pipeline.stats import PipelineStats
from edge_runtime.supervision.backoff import Backoff
from edge_runtime.sources.base import EndOfStream, Source, SourceError
from edge_runtime.supervision.heartbeat import Heartbeats
from edge_runtime.supervision.waiting import wait_beating

logger = logging.getLogger(__name__)


class SourceStage:
    def __init__(self, name: str, source: Source, slot: FrameSlot, stats: PipelineStats,
                 heartbeats: Heartbeats, stop: threading.Event, fps: float,
                 retry: BackoffConfig | None = None) -> None:
        self.name = name
        self.source = source
        self._slot = slot
        self._stats = stats
        self._heartbeats = heartbeats
        self._stop = stop
        self._interval = 1.0 / fps if fps > 0 else 0.0  # 0: as fast as the source gives frames
        retry = retry or RetryConfig().source  # [retry] source
        self.backoff = Backoff(retry.min_delay, retry.max_delay)  # owned by the source thread

    def run(self) -> None:
        beat = self._heartbeats.register(f"source-{self.name}")
        backoff = self.backoff
        source, is_open, stats = self.source, False, self._stats
        failed = False  # failed since the last frame: the next frame is a reconnect
        delivered = False  # a frame came since the last open: the backoff has started over
        next_frame_at = 0.0
        try:
            while not self._stop.is_set():
                beat.beat()
                if self._interval and is_open:
                    # Pace before reading, not between reading and handing over: a live source
                    # (camera, stream, command) then hands over the newest frame, not one that
                    # aged by the whole interval (fps = 1 made every result a second old).
                    now = time.monotonic()
                    if next_frame_at > now and wait_beating(self._stop, next_frame_at - now, beat):
                        break
                asked = time.monotonic()  # the cadence counts from the read, not its answer
                try:
                    if not is_open:
                        source.open()
                        is_open, delivered = True, False
                    frame = source.read()
                except EndOfStream:
                    logger.info("pipeline %s: source finished", self.name)
                    break
                except Exception as exc:  # noqa: BLE001 - any source failure is retried, never fatal
                    delay = backoff.next_delay()
                    stats.source_retrying = True
                    stats.source_failures += 1
                    failed = True
                    logger.warning("pipeline %s: source failed: %s; retrying in %.1fs",
                                   self.name, exc, delay, exc_info=not isinstance(exc, SourceError))
                    source.close()
                    is_open = False
                    wait_beating(self._stop, delay, beat)  # degraded, not hung: keep beating
                    continue
                if frame is None:
                    continue
                if not delivered:  # the (re)opened source works: start the backoff over
                    # said here, not at open(): a network camera's open returns before it has
                    # connected, and a command's before its program has written anything
                    logger.info("pipeline %s: source delivering frames", self.name)
                    backoff.reset()
                    delivered = True
                    if failed:
                        stats.source_reconnects += 1
                        failed = False
                stats.source_retrying = False
                if self._interval:
                    next_frame_at = max(asked, next_frame_at) + self._interval
                while not self._slot.put(frame, WAIT):
                    beat.beat()
                    if self._stop.is_set():
                        break  # stopped while a file source waited for room: abandoned, uncounted
                else:
                    stats.frames += 1  # counted once in the slot: frames - backlog = frames taken
        finally:
            source.close()
            self._slot.finish()
            self._heartbeats.unregister(f"source-{self.name}")
