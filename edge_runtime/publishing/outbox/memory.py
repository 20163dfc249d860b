"""The outbox in memory: same contract, nothing on disk (fallback when no disk is usable; bench)."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Iterable, Sequence

from edge_runtime.publishing.outbox.base import EncodeErrors, Encoder, Outbox, OutboxMessage


class MemoryOutbox(Outbox):
    """Same contract, nothing on disk: results survive outages but not a restart."""

    backend = "memory"

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        super().__init__(max_messages, max_bytes)
        self._messages: OrderedDict[int, tuple[OutboxMessage, float]] = OrderedDict()
        self._next_id = 1

    def append_many(self, pipeline: str, topic: str, qos: int,
                    encoders: Sequence[Encoder]) -> list[int]:
        seqs: list[int] = []
        errors: list[Exception] = []
        dropped: dict[str, list[int]] = {}
        with self._lock:
            counts = self._counts_for(pipeline)
            for encode in encoders:
                seq = counts.next_seq
                try:
                    payload = encode(seq)
                except Exception as exc:  # noqa: BLE001 - reported after the others are stored
                    errors.append(exc)
                    continue
                message = OutboxMessage(self._next_id, pipeline, seq, topic, qos, payload)
                self._next_id += 1
                counts.next_seq = seq + 1
                self._messages[message.id] = (message, time.time())
                counts.depth += 1
                self._depth += 1
                self._bytes += message.size
                seqs.append(seq)
                while self._over_bounds():
                    _, (old, _) = self._messages.popitem(last=False)
                    self._forget(old)
                    self._counts_for(old.pipeline).dropped += 1
                    dropped.setdefault(old.pipeline, []).append(old.seq)
        self._log_drops(dropped)
        if errors:
            raise EncodeErrors(seqs, errors)
        return seqs

    def _forget(self, message: OutboxMessage) -> None:
        self._counts_for(message.pipeline).depth -= 1
        self._depth -= 1
        self._bytes -= message.size

    def pending(self, after_id: int, limit: int) -> list[OutboxMessage]:
        with self._lock:
            out = []
            for message_id, (message, _) in self._messages.items():
                if message_id > after_id:
                    out.append(message)
                    if len(out) >= limit:
                        break
            return out

    def ack(self, messages: Iterable[OutboxMessage]) -> int:
        removed = 0
        with self._lock:
            for message in messages:
                if self._messages.pop(message.id, None) is not None:
                    self._forget(message)
                    removed += 1
        return removed

    def reject(self, message: OutboxMessage) -> bool:
        with self._lock:
            if self._messages.pop(message.id, None) is None:
                return False
            self._forget(message)
            self._counts_for(message.pipeline).dropped += 1
        return True

    def oldest_created(self) -> float | None:
        with self._lock:
            return next(iter(self._messages.values()))[1] if self._messages else None

