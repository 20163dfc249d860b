"""The outbox contract and the bookkeeping both backends share: seq, depth, bytes, drop counters.

See the package docstring for what the outbox guarantees.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Literal, Sequence

from edge_runtime.messages.payload import EncodeErrors
from edge_runtime.ratelimit import RateLimitedLogger

logger = logging.getLogger(__name__)

SyncMode = Literal["full", "normal"]
Encoder = Callable[[int], bytes]  # seq -> the encoded payload carrying that seq


class OutboxError(Exception):
    """The outbox file is unusable (corrupt, unreadable, written by a newer version)."""


@dataclass(frozen=True)
class OutboxMessage:
    id: int  # insertion order over all pipelines; replay order
    pipeline: str
    seq: int
    topic: str
    qos: int
    payload: bytes

    @property
    def size(self) -> int:
        return len(self.payload) + len(self.topic)


@dataclass
class PipelineCounts:
    next_seq: int = 0
    dropped: int = 0  # results removed by the bounds before the broker acknowledged them
    depth: int = 0  # results waiting in the outbox


@dataclass(frozen=True)
class OutboxSnapshot:
    backend: str  # "sqlite" or "memory"
    path: str
    depth: int
    bytes: int
    dropped: int
    oldest_age_s: float | None
    pipelines: dict[str, PipelineCounts]



class Outbox:
    """Bookkeeping shared by both backends: seq, depth, bytes and drop counters under one lock."""

    backend = "memory"

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.path = ""
        self._lock = threading.Lock()
        self._counts: dict[str, PipelineCounts] = {}
        self._depth = 0
        self._bytes = 0
        self._warn = RateLimitedLogger(logger)

    # -- the interface --------------------------------------------------------------------------
    def append(self, pipeline: str, topic: str, qos: int, encode: Encoder) -> int:
        """Give the result the pipeline's next seq and store it; returns the seq."""
        try:
            return self.append_many(pipeline, topic, qos, [encode])[0]
        except EncodeErrors as exc:
            raise exc.errors[0] from None

    def append_many(self, pipeline: str, topic: str, qos: int,
                    encoders: Sequence[Encoder]) -> list[int]:
        """Store several results of one pipeline in order, in one transaction; their seqs.

        A result whose encoder fails takes no seq; the others are stored, then EncodeErrors says
        which were stored and why the rest failed.
        """
        raise NotImplementedError

    def pending(self, after_id: int, limit: int) -> list[OutboxMessage]:
        """Up to `limit` messages with id > after_id, oldest first."""
        raise NotImplementedError

    def ack(self, messages: Iterable[OutboxMessage]) -> int:
        """Remove acknowledged messages (ones dropped meanwhile are ignored); returns how many."""
        raise NotImplementedError

    def reject(self, message: OutboxMessage) -> bool:
        """Delete a message the broker will never take, counted as dropped; False if gone."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def oldest_created(self) -> float | None:
        raise NotImplementedError

    # -- counters ---------------------------------------------------------------------------------
    def depth(self) -> int:
        with self._lock:
            return self._depth

    def snapshot(self) -> OutboxSnapshot:
        oldest = self.oldest_created()
        with self._lock:
            counts = {name: PipelineCounts(c.next_seq, c.dropped, c.depth)
                      for name, c in self._counts.items()}
            return OutboxSnapshot(
                backend=self.backend, path=self.path, depth=self._depth, bytes=self._bytes,
                dropped=sum(c.dropped for c in counts.values()),
                oldest_age_s=None if oldest is None else max(0.0, round(time.time() - oldest, 3)),
                pipelines=counts,
            )

    def _counts_for(self, pipeline: str) -> PipelineCounts:
        counts = self._counts.get(pipeline)
        if counts is None:
            counts = self._counts[pipeline] = PipelineCounts()
        return counts

    def _over_bounds(self) -> bool:
        return self._depth > self.max_messages or self._bytes > self.max_bytes

    def _log_drops(self, dropped: dict[str, list[int]]) -> None:
        for pipeline, seqs in dropped.items():
            with self._lock:  # called after the commit: other pipelines' commits write them
                so_far = self._counts_for(pipeline).dropped
            self._warn.warning(
                f"drop-{pipeline}",
                "outbox full (limits: %d results, %d bytes): dropped %d oldest result(s) of "
                "pipeline %s (seq %d..%d); %d dropped so far",
                self.max_messages, self.max_bytes, len(seqs), pipeline, min(seqs), max(seqs),
                so_far)

