"""Results of one pipeline committed together: one outbox transaction (one fsync) per batch.

A result is held back only while the pipeline already has its next frame in hand, so a pipeline
that waits for its source publishes every result at once; a pipeline running flat out (a sensor
file at full speed) commits up to `max_results` results, or `max_wait` seconds' worth, together.
Until the commit a result has no `seq` and is no more "accepted" than a frame in the interpreter;
stopping flushes the batch.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Protocol, Sequence

from edge_runtime.messages.payload import EncodeErrors

MAX_RESULTS = 64
MAX_WAIT_S = 0.05


class BatchSink(Protocol):
    def publish_results(self, pipeline: str, bodies: Sequence[dict[str, Any]]) -> list[int]: ...


class ResultBatch:
    def __init__(
        self,
        sink: BatchSink,
        pipeline: str,
        on_published: Callable[[int], None],
        on_failed: Callable[[Exception], None],
        max_results: int = MAX_RESULTS,
        max_wait: float = MAX_WAIT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sink = sink
        self._pipeline = pipeline
        self._on_published = on_published
        self._on_failed = on_failed
        self._max_results = max_results
        self._max_wait = max_wait
        self._clock = clock
        self._bodies: list[dict[str, Any]] = []
        self._first_at = 0.0

    def __len__(self) -> int:
        return len(self._bodies)

    def add(self, body: dict[str, Any]) -> None:
        if not self._bodies:
            self._first_at = self._clock()
        self._bodies.append(body)

    def flush_unless(self, more_coming: bool) -> None:
        """Flush, unless the next result is already on its way and the batch has room and time."""
        if not self._bodies:
            return
        if (not more_coming or len(self._bodies) >= self._max_results
                or self._clock() - self._first_at >= self._max_wait):
            self.flush()

    def flush(self) -> None:
        bodies, self._bodies = self._bodies, []
        if not bodies:
            return
        try:
            self._sink.publish_results(self._pipeline, bodies)
        except EncodeErrors as exc:  # e.g. a NaN score: the batch's other results were stored
            self._on_published(len(exc.stored))
            for error in exc.errors:
                self._on_failed(error)
            return
        except Exception as exc:  # noqa: BLE001 - the outbox failed: reported, never fatal
            self._on_failed(exc)
            return
        self._on_published(len(bodies))
