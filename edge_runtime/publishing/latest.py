"""Latest-value messages: retained state that is worth sending only while it is the newest.

Entity states, snapshots, discovery and control states do not go through the durable outbox: a
picture or a count is stale once a newer one exists. Each topic has one slot; a newer value
replaces one not yet sent, so the memory held is bounded by the number of topics. The network
thread takes the slots while connected (`take`); while the broker is away they wait. A value
taken just before a connection broke may be lost: owners that cannot wait for their next value
put theirs again after a reconnect (homeassistant/service.py: discovery, states, control).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class LatestMessage:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


class LatestValues:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[str, LatestMessage] = {}
        self.replaced = 0  # values replaced by a newer one before they were sent

    def put(self, message: LatestMessage) -> None:
        with self._lock:
            if message.topic in self._slots:
                self.replaced += 1
            self._slots[message.topic] = message

    def take(self) -> list[LatestMessage]:
        """Every waiting value, oldest topic first; the slots are emptied."""
        with self._lock:
            messages, self._slots = list(self._slots.values()), {}
        return messages

    def __len__(self) -> int:
        with self._lock:
            return len(self._slots)
