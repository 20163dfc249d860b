"""The outbox in one sqlite file (WAL journal): rows, counters, eviction beyond the bounds.

Per result the encoded MQTT message, per pipeline the next `seq` and the number of results dropped
on overflow. A batch gets its seqs and is stored in one transaction (group_commit.py decides who
commits), so a result that has a seq is on disk, and seq stays gap-free and keeps increasing
across restarts; `ack` deletes rows once the broker sent PUBACK. The file format is in
schema.py, the connections and transactions in sqlite_store.py.

A full disk (issue 12, scenario 3) must not break the outbox for good:
- Its own size is bounded by `max_bytes`, WAL included, and a nearly full disk makes new rows
  reuse freed pages instead of growing the file (size_bound.py).
- A commit refused for want of space ("database or disk is full") deletes the oldest rows and is
  tried again: rows freed by deliveries or by eviction are reused at once. Results that still
  cannot be stored are dropped and counted.
- A delete that fails is remembered (the row is delivered: not sent again, not counted as
  waiting) and retried with the next write, until the disk has room again.
- `seq` and `dropped` never go backwards: a dropped result only takes a seq (the gap a consumer
  sees) from a block reserved on disk first (`pipelines.reserved`); the next start continues
  after the reserved block, so no seq ever names two results.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import Iterable, Sequence

from edge_runtime.publishing.outbox.base import (
    EncodeErrors,
    Encoder,
    OutboxError,
    OutboxMessage,
    SyncMode,
)
from edge_runtime.publishing.outbox.group_commit import GroupCommit, Pending
from edge_runtime.publishing.outbox.schema import (
    FORMAT_VERSION,
    INSERT_MESSAGE,
    UPSERT,
    SalvagedRow,
)
from edge_runtime.publishing.outbox.size_bound import is_full
from edge_runtime.publishing.outbox.sqlite_store import SqliteStore

logger = logging.getLogger(__name__)

SEQ_BLOCK = 1000  # seqs reserved on disk at a time for results a full disk makes us drop
ROOM_TRIES = 4  # evict-and-retry rounds before the results of a refused commit are dropped

__all__ = ["FORMAT_VERSION", "SalvagedRow", "SqliteOutbox"]


class SqliteOutbox(SqliteStore):
    """The outbox in one sqlite file in WAL mode; see the module docstring."""

    backend = "sqlite"

    def __init__(self, path: Path, max_messages: int, max_bytes: int,
                 sync: SyncMode = "full") -> None:
        super().__init__(path, max_messages, max_bytes, sync)
        self._group = GroupCommit(self._commit_and_log)

    def append_many(self, pipeline: str, topic: str, qos: int,
                    encoders: Sequence[Encoder]) -> list[int]:
        """Store results; returns once the transaction holding them is committed (group commit)."""
        items = [Pending(pipeline, topic, qos, encode) for encode in encoders]
        self._group.submit(items)
        failed = [item.error for item in items if item.error is not None]
        for error in failed:
            if isinstance(error, OutboxError):  # the commit itself failed, not an encoding
                raise error
        if failed:
            raise EncodeErrors([item.seq for item in items if item.error is None], failed)
        return [item.seq for item in items]

    def _commit_and_log(self, batch: list[Pending]) -> None:
        self._log_drops(self._commit(batch))

    def _commit(self, batch: list[Pending]) -> dict[str, list[int]]:
        """Store the batch; when the disk refuses, make room and try again, else drop it."""
        with self._lock:
            self._retry_deletes()
            dropped: dict[str, list[int]] = {}
            error: sqlite3.Error | None = None
            row = self._bytes // self._depth if self._depth else 0
            self._bound.guard(row * len(batch) + self._bound.page_size, self._make_room)
            for attempt in range(ROOM_TRIES):
                try:
                    for name, seqs in self._insert(batch).items():
                        dropped.setdefault(name, []).extend(seqs)
                    return dropped
                except sqlite3.Error as exc:
                    error = exc
                    self._rollback()
                for item in batch:
                    item.seq = -1  # given again by the next attempt
                if not is_full(error):
                    break
                if self._reserve.give_up():
                    continue  # the same commit again, with the reserve's room
                # (logged there, and not as "outbox full": the bounds were not what stopped it)
                if not self._make_room((row * len(batch) + self._bound.page_size) * 4 ** attempt):
                    break
            assert error is not None
            self._drop(batch, error)
            return dropped

    def _insert(self, batch: list[Pending]) -> dict[str, list[int]]:
        """One transaction for the batch: seq, rows, eviction beyond the bounds, counters."""
        db = self._db
        next_seq: dict[str, int] = {}
        stored: list[tuple[Pending, int]] = []
        dropped: dict[str, list[int]] = {}
        db.execute("BEGIN IMMEDIATE")
        created = time.time()
        rows: list[tuple[str, int, str, int, bytes, int, float]] = []
        for item in batch:
            if item.error is not None:
                continue  # its encoding failed in an earlier attempt
            seq = next_seq.get(item.pipeline, self._counts_for(item.pipeline).next_seq)
            try:
                payload = item.encode(seq)
            except Exception as exc:  # noqa: BLE001 - the caller's problem, not the batch's
                item.error = exc
                continue
            item.seq = seq
            next_seq[item.pipeline] = seq + 1
            size = len(payload) + len(item.topic)
            rows.append((item.pipeline, seq, item.topic, item.qos, payload, size, created))
            stored.append((item, size))
        db.executemany(
            INSERT_MESSAGE, rows)
        depth = self._depth + len(stored)
        total = self._bytes + sum(size for _, size in stored)
        if depth > self.max_messages or total > self.max_bytes:
            dropped = self._evict(depth, total)
        # Absolute values from memory (loaded at open): they also carry drops counted while the
        # disk refused writes. Writing next_seq releases any reserved block.
        totals = {name: self._counts_for(name).dropped + len(seqs)
                  for name, seqs in dropped.items()}
        for name in next_seq:
            totals.setdefault(name, self._counts_for(name).dropped)
        db.executemany(UPSERT, [
            (name, next_seq.get(name, self._counts_for(name).next_seq), value, 0)
            for name, value in totals.items()])
        db.execute("COMMIT")
        self._forget_evicted()
        for name, seq in next_seq.items():
            self._counts_for(name).next_seq = seq
        for name in totals:
            self._reserved[name] = 0
        for item, size in stored:
            self._counts_for(item.pipeline).depth += 1
            self._depth += 1
            self._bytes += size
        for name, seqs in dropped.items():
            self._counts_for(name).dropped += len(seqs)
        return dropped

    def _make_room(self, needed: int) -> dict[str, list[int]]:
        """The disk refused a commit: delete the oldest rows holding at least `needed` bytes (at
        least one row), counted as dropped, in their own transaction; the freed pages are reused
        by the retried commit. {} when there is nothing to delete or even the delete fails."""
        def evict() -> dict[str, list[int]]:
            dropped = self._evict(self._depth, self._bytes, needed)
            if dropped:
                self._db.executemany(UPSERT, [
                    (name, self._counts_for(name).next_seq,
                     self._counts_for(name).dropped + len(seqs), self._reserved.get(name, 0))
                    for name, seqs in dropped.items()])
            return dropped

        try:
            dropped = self._transaction(evict)
            self._forget_evicted()
        except sqlite3.Error as exc:
            self._warn.warning("room", "outbox %s: cannot delete old results to make room: %s",
                               self.path, exc)
            return {}
        for name, seqs in dropped.items():
            self._counts_for(name).dropped += len(seqs)
            self._warn.warning(f"room-{name}", "outbox %s: the disk is full: dropped %d oldest "
                               "result(s) of pipeline %s (seq %d..%d) to store new ones",
                               self.path, len(seqs), name, min(seqs), max(seqs))
        return dropped

    def _drop(self, batch: list[Pending], exc: sqlite3.Error) -> None:
        """The batch cannot be stored: count its results as dropped. Each takes a seq (the gap a
        consumer sees) only from a block reserved on disk, so no seq is ever given twice."""
        touched: set[str] = set()
        for item in batch:
            if item.error is not None:
                continue  # its encoding failed: the caller gets that error instead
            counts = self._counts_for(item.pipeline)
            if counts.next_seq >= self._reserved.get(item.pipeline, 0):
                self._reserve_seqs(item.pipeline, counts.next_seq + SEQ_BLOCK)
            if counts.next_seq < self._reserved.get(item.pipeline, 0):
                item.seq = counts.next_seq
                counts.next_seq += 1
            else:
                item.error = OutboxError(f"outbox {self.path}: cannot store the result ({exc}); "
                                         "dropped and counted")
            counts.dropped += 1
            touched.add(item.pipeline)
            self._warn.warning("write", "outbox %s: cannot store result %s/%s (%s); dropped",
                               self.path, item.pipeline,
                               item.seq if item.seq >= 0 else "(no seq)", exc)
        self._save_counts(touched)

    def _reserve_seqs(self, pipeline: str, until: int) -> None:
        """Put `reserved = until` on disk before handing out seqs below it (an in-place update:
        it usually fits where the results did not)."""
        previous = self._reserved.get(pipeline, 0)
        self._reserved[pipeline] = until
        if not self._save_counts({pipeline}):
            self._reserved[pipeline] = previous

    def _evict(self, depth: int, total: int, at_least: int = 0) -> dict[str, list[int]]:
        """Inside a transaction: delete the oldest rows until within bounds (and until rows of
        `at_least` bytes are gone)."""
        dropped: dict[str, list[int]] = {}
        last_id = None
        freed = 0
        rows = self._db.execute("SELECT id, pipeline, seq, size FROM messages ORDER BY id")
        for row_id, pipeline, seq, size in rows:
            if depth <= self.max_messages and total <= self.max_bytes and freed >= at_least:
                break
            freed += size
            last_id = row_id
            if row_id in self._undeleted:  # delivered already: deleting it drops nothing
                continue
            depth -= 1
            total -= size
            dropped.setdefault(pipeline, []).append(seq)
            self._counts_for(pipeline).depth -= 1
            self._depth -= 1
            self._bytes -= size
        rows.close()
        if last_id is not None:
            self._db.execute("DELETE FROM messages WHERE id <= ?", (last_id,))
            self._evicted_upto = last_id  # undeleted rows up to here go once this commits
        return dropped

    def restore(self, counters: dict[str, tuple[int, int]], rows: list[SalvagedRow]) -> None:
        """Load salvaged counters and messages into this (fresh) outbox, in their old order."""
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                db.executemany(
                    INSERT_MESSAGE,
                    [(p, s, t, q, b, len(b) + len(t), c) for p, s, t, q, b, c in rows])
                db.executemany(UPSERT, [(name, n, d, 0) for name, (n, d) in counters.items()])
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                logger.error("outbox %s: cannot store the salvaged results: %s", self.path, exc)
                return
            for name, (next_seq, dropped) in counters.items():
                counts = self._counts_for(name)
                counts.next_seq, counts.dropped = next_seq, dropped
            self._reload_counts()

    def ack(self, messages: Iterable[OutboxMessage]) -> int:
        """Delete delivered rows. If the disk refuses even that, the rows count as delivered
        (not waiting, not sent again) and the delete is retried with the next write."""
        with self._lock:
            gone = [m for m in messages if m.id not in self._undeleted]
            deleted = self._delete(gone + list(self._undeleted.values()))
            if deleted is None:
                for message in gone:
                    self._undeleted[message.id] = message
                self._warn.warning("ack", "outbox %s: cannot delete %d delivered result(s) yet "
                                   "(retried with the next write)", self.path,
                                   len(self._undeleted))
                self._reload_counts()
                return len(gone)
            removed = 0
            for message in gone:
                if message.id in deleted:
                    self._counts_for(message.pipeline).depth -= 1
                    self._depth -= 1
                    self._bytes -= message.size
                    removed += 1
            self._undeleted.clear()
        return removed

    def reject(self, message: OutboxMessage) -> bool:
        with self._lock:
            counts = self._counts_for(message.pipeline)
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                if not db.execute("DELETE FROM messages WHERE id = ?", (message.id,)).rowcount:
                    db.execute("ROLLBACK")
                    return False
                db.execute("UPDATE pipelines SET dropped = ? WHERE name = ?",
                           (counts.dropped + 1, message.pipeline))
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                self._warn.warning("reject", "outbox %s: cannot drop a rejected result: %s",
                                   self.path, exc)
                return False
            counts.dropped += 1
            counts.depth -= 1
            self._depth -= 1
            self._bytes -= message.size
        return True
