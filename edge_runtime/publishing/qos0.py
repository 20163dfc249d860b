"""The QoS 0 lane: results that bypass the outbox.

They are sent only while the broker is connected and counted as `qos0_dropped` otherwise (or when
the network thread is `capacity` results behind); their seq restarts at 0 with the daemon. Workers
add under the lane's lock; the network thread takes.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Sequence

from edge_runtime.publishing.outbox import EncodeErrors, Encoder


class Qos0Lane:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._seq: dict[str, int] = {}
        self._queue: deque[tuple[str, bytes]] = deque()
        self._dropped = 0

    def add(self, pipeline: str, topic: str, encoders: Sequence[Encoder],
            connected: bool) -> list[int]:
        """Give each result the pipeline's next seq and queue it (or count it dropped).

        A result that cannot be encoded takes no seq, as in the outbox: EncodeErrors after the rest.
        """
        seqs: list[int] = []
        errors: list[Exception] = []
        with self._lock:
            for encode in encoders:
                seq = self._seq.get(pipeline, 0)
                try:
                    payload = encode(seq)
                except Exception as exc:  # noqa: BLE001 - as the outbox does: no seq taken
                    errors.append(exc)
                    continue
                self._seq[pipeline] = seq + 1
                seqs.append(seq)
                if len(self._queue) >= self.capacity or not connected:
                    self._dropped += 1
                else:
                    self._queue.append((topic, payload))
        if errors:
            raise EncodeErrors(seqs, errors)
        return seqs

    def take(self) -> tuple[str, bytes] | None:
        """The oldest queued (topic, payload), or None."""
        with self._lock:
            return self._queue.popleft() if self._queue else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._queue)

    @property
    def dropped(self) -> int:
        with self._lock:
            return self._dropped
