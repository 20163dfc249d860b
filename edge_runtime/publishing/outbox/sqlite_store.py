"""The outbox's sqlite file: its connections, transactions, counters on disk, failed deletes.

One writer connection, shared by the pipelines' workers and the network thread under the outbox's
lock, and one reader connection for replay (WAL lets it read committed rows while a commit waits
for its fsync). A transaction refused for want of space gives up the reserve (reserve.py) and runs
once more; a failed one is rolled back and the in-memory counters are reloaded from the file.
A delete that fails is remembered (the row is delivered: not sent again, not counted as waiting)
and retried with the next write and at close. What the outbox does with these is in sqlite.py.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path
from typing import Callable, Iterable, TypeVar

from edge_runtime.publishing.outbox.base import (
    Outbox,
    OutboxError,
    OutboxMessage,
    PipelineCounts,
    SyncMode,
)
from edge_runtime.publishing.outbox.schema import DEPTH_BY_PIPELINE, UPSERT, prepare
from edge_runtime.publishing.outbox.size_bound import SizeBound, is_full

logger = logging.getLogger(__name__)
T = TypeVar("T")


class SqliteStore(Outbox):
    """The sqlite file under an outbox (SqliteOutbox); see the module docstring."""

    def __init__(self, path: Path, max_messages: int, max_bytes: int,
                 sync: SyncMode = "full") -> None:
        super().__init__(max_messages, max_bytes)
        self.path = str(path)
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves; one connection shared by the
            # pipelines' workers and the network thread, serialized by self._lock.
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                       timeout=5.0)
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot open: {exc}") from exc
        self._sync = sync
        self._reserved: dict[str, int] = {}  # seqs below this are reserved on disk
        self._undeleted: dict[int, OutboxMessage] = {}  # delivered, but their delete failed
        self._evicted_upto = 0  # highest row id the open transaction's eviction deletes
        try:
            self._prepare(sync)
            # Readers (the network thread's replay) use their own connection: WAL lets them read
            # committed rows while a worker's commit waits for its fsync, without our lock.
            self._reader = sqlite3.connect(self.path, isolation_level=None,
                                           check_same_thread=False, timeout=5.0)
        except (sqlite3.Error, OutboxError) as exc:
            self._db.close()
            raise exc if isinstance(exc, OutboxError) else OutboxError(str(exc)) from exc
        self._read_lock = threading.Lock()

    def _prepare(self, sync: SyncMode) -> None:
        db = self._db
        prepare(db, sync)
        self._bound = SizeBound(db, self.path, self.max_bytes)
        self._reserve = self._bound.reserve
        for name, next_seq, dropped, reserved in db.execute(
                "SELECT name, next_seq, dropped, reserved FROM pipelines"):
            # Seqs up to `reserved` may have gone to results dropped on a full disk: never reuse.
            self._counts[name] = PipelineCounts(max(int(next_seq), int(reserved)), int(dropped))
            self._reserved[name] = int(reserved)
        for name, depth, size in db.execute(DEPTH_BY_PIPELINE):
            self._counts_for(name).depth = int(depth)
            self._depth += int(depth)
            self._bytes += int(size)

    def _transaction(self, body: Callable[[], T]) -> T:
        """BEGIN IMMEDIATE, `body`, COMMIT (under self._lock). On a full disk the reserve is given
        up and it runs once more; a failure is rolled back and raised."""
        for last in (False, True):
            try:
                self._db.execute("BEGIN IMMEDIATE")
                result = body()
                self._db.execute("COMMIT")
                return result
            except sqlite3.Error as exc:
                self._rollback()
                if last or not is_full(exc) or not self._reserve.give_up():
                    raise
        raise AssertionError("unreachable")

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # no transaction was open
        try:  # an ack that failed half-way must not leave the result commits unsynced
            self._db.execute(f"PRAGMA synchronous={self._sync.upper()}")
        except sqlite3.Error:
            pass
        # The in-memory counters may have been adjusted by _evict before the failure: reload.
        self._evicted_upto = 0
        self._reload_counts()

    def _reload_counts(self) -> None:
        try:
            depth = {name: (int(d), int(s))
                     for name, d, s in self._db.execute(DEPTH_BY_PIPELINE)}
        except sqlite3.Error:
            return
        for message in self._undeleted.values():  # delivered: not waiting any more
            d, size = depth.get(message.pipeline, (0, 0))
            depth[message.pipeline] = (max(0, d - 1), max(0, size - message.size))
        self._depth = sum(d for d, _ in depth.values())
        self._bytes = sum(s for _, s in depth.values())
        for name in depth:
            self._counts_for(name)
        for name, counts in self._counts.items():
            counts.depth = depth.get(name, (0, 0))[0]

    def _save_counts(self, pipelines: Iterable[str], release: bool = False) -> bool:
        """Write the counters; `release`: next_seq is exact on disk, reserved blocks are freed."""
        names = list(pipelines)
        rows = [(name, self._counts_for(name).next_seq, self._counts_for(name).dropped,
                 0 if release else self._reserved.get(name, 0)) for name in names]
        if not rows:
            return True
        try:
            self._transaction(lambda: self._db.executemany(UPSERT, rows))
        except sqlite3.Error as exc:
            self._warn.warning("counts", "outbox %s: cannot save the seq and drop counters: %s",
                               self.path, exc)
            return False
        if release:
            for name in names:
                self._reserved[name] = 0
        return True

    def _delete(self, messages: list[OutboxMessage]) -> set[int] | None:
        """Delete rows in one transaction; the ids that were there, None if it failed."""
        db = self._db
        try:
            # A lost delete costs a duplicate, never a result: no fsync for it. It reaches the
            # disk with the next result's (synchronous) commit, or the OS's writeback.
            db.execute("PRAGMA synchronous=OFF")
            deleted = self._transaction(lambda: {
                m.id for m in messages
                if db.execute("DELETE FROM messages WHERE id = ?", (m.id,)).rowcount})
            db.execute(f"PRAGMA synchronous={self._sync.upper()}")
        except sqlite3.Error:
            self._rollback()
            return None
        return deleted

    def _retry_deletes(self) -> None:
        """Delete the delivered rows an earlier ack could not (under self._lock)."""
        if self._undeleted and self._delete(list(self._undeleted.values())) is not None:
            logger.info("outbox %s: deleted %d delivered result(s) whose delete had failed",
                        self.path, len(self._undeleted))
            self._undeleted.clear()

    def _forget_evicted(self) -> None:
        """After a commit: the delivered rows its eviction deleted need no retry any more."""
        if self._evicted_upto:
            for row_id in [i for i in self._undeleted if i <= self._evicted_upto]:
                del self._undeleted[row_id]
            self._evicted_upto = 0

    def pending(self, after_id: int, limit: int) -> list[OutboxMessage]:
        with self._read_lock:
            try:
                rows = self._reader.execute(
                    "SELECT id, pipeline, seq, topic, qos, payload FROM messages WHERE id > ? "
                    "ORDER BY id LIMIT ?", (after_id, limit)).fetchall()
            except sqlite3.Error as exc:
                self._warn.warning("read", "outbox %s: cannot read: %s", self.path, exc)
                return []
        undeleted = self._undeleted  # delivered rows whose delete failed are not sent again
        return [OutboxMessage(int(i), p, int(s), t, int(q), bytes(b))
                for i, p, s, t, q, b in rows if int(i) not in undeleted]

    def oldest_created(self) -> float | None:
        with self._read_lock:
            try:
                row = self._reader.execute(
                    "SELECT created FROM messages ORDER BY id LIMIT 1").fetchone()
            except sqlite3.Error:
                return None
        return None if row is None else float(row[0])

    def close(self) -> None:
        with self._lock, self._read_lock:
            self._retry_deletes()
            # Drops counted while the disk refused writes; next_seq exact: no block stays reserved.
            self._save_counts(list(self._counts), release=True)
            try:
                self._reader.close()
                self._db.close()
            except sqlite3.Error as exc:
                logger.warning("outbox %s: close failed: %s", self.path, exc)
