"""Poison results: a result the broker rejects by closing the connection must not block the rest.

A connection that the broker closes within POISON_WINDOW_S of its CONNACK without acknowledging
anything makes the oldest unacknowledged result a suspect: it is then sent alone. After
POISON_STRIKES more such connections with it alone in flight it is judged poison (the network
thread deletes it, counted as dropped); one acknowledgement clears the suspicion. Pure
bookkeeping, owned by the network thread.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from edge_runtime.publishing.outbox import OutboxMessage

# A result is dropped as poison when the broker closed this many connections in a row while it
# was the only result in flight and unacknowledged (e.g. larger than mosquitto's max_packet_size):
# otherwise it would block every later result forever.
POISON_STRIKES = 3
POISON_WINDOW_S = 5.0  # ... and did so within this many seconds of the CONNACK


class PoisonJudge:
    def __init__(self) -> None:
        self.suspect: int | None = None  # outbox id sent alone after fruitless connections
        self.strikes = 0

    def window(self, normal: int) -> int:
        """How many results may be in flight: one while a result is suspected."""
        return 1 if self.suspect is not None else normal

    def acked(self, messages: Iterable[OutboxMessage]) -> None:
        if self.suspect is not None and any(m.id == self.suspect for m in messages):
            self.clear()  # it went through: not poison

    def clear(self) -> None:
        self.suspect, self.strikes = None, 0

    def connection_lost(self, unacked: Sequence[OutboxMessage], acks: int,
                        connected_for: float) -> OutboxMessage | None:
        """After a lost connection (`unacked` oldest first): the result judged poison, if any."""
        # A broker that refuses a packet closes the connection at once; a flaky network path
        # drops it after a keepalive or more: only quick, fruitless connections count.
        if acks or not unacked or connected_for >= POISON_WINDOW_S:
            self.clear()
            return None
        oldest = unacked[0]
        if self.suspect == oldest.id and len(unacked) == 1:
            self.strikes += 1
        else:
            self.suspect, self.strikes = oldest.id, 0  # probe it alone next time
        return oldest if self.strikes >= POISON_STRIKES else None
